"""An attacker's read of the control-plane client: a node (or whoever
answers in its place) that redirects a signed request must not get it
carried elsewhere, headers and body included."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import unibus
from unibus.control import ControlPlane


def serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_signed_request_answered_with_a_redirect_is_refused_not_followed() -> None:
    seen: list[str] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            seen.append(f"{self.path} {self.headers.get('x-unibus-signature')}")
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    elsewhere = serve(Elsewhere)

    class Redirecting(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(307)
            self.send_header("location", f"http://127.0.0.1:{elsewhere.server_address[1]}{self.path}")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    redirecting = serve(Redirecting)
    try:
        control = ControlPlane([f"http://127.0.0.1:{redirecting.server_address[1]}"], unibus.generate_identity())
        with pytest.raises(unibus.ControlPlaneError) as refused:
            asyncio.run(control.json("GET", "/v1/rooms"))
        assert refused.value.status == 307
        assert seen == []
    finally:
        redirecting.shutdown()
        elsewhere.shutdown()
