"""The control plane's HTTP API (docs/api.md) as the client calls it: every
request signed (docs/protocol.md §1), TLS pinned to a CA file when one is
given, the next seed tried when one cannot be reached. Answers are unverified
input: the client checks what they claim."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .errors import ControlPlaneError, UnreachableError
from .identity import Identity
from .wire import sign_request

#: Seconds one HTTP exchange may take.
TIMEOUT_S = 15


class ControlPlane:
    """Signed requests to the control plane, failing over between ``urls``.

    Example::

        control = ControlPlane(["https://127.0.0.1:8470"], identity, ca="ca.pem")
        rooms = await control.json("GET", "/v1/rooms?view=summary")
    """

    def __init__(self, urls: list[str], identity: Identity, ca: str | None = None) -> None:
        if not urls:
            raise ValueError("at least one control-plane URL is needed")
        for u in urls:
            if urllib.parse.urlsplit(u).scheme not in ("http", "https"):
                raise ValueError(f"not an http(s) URL: {u!r}")
        self._urls = [u.rstrip("/") for u in urls]
        self._identity = identity
        # With a CA file, that CA alone is trusted (the node's own, usually);
        # without one, the system's roots.
        self._tls = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
        self._current = 0
        # No redirect handler: the node never redirects, and a followed
        # redirect would carry the signed headers and body wherever it
        # pointed (the signature binds method, path and body, not the host).
        self._opener = urllib.request.OpenerDirector()
        for handler in (
            urllib.request.ProxyHandler(),
            urllib.request.HTTPHandler(),
            urllib.request.HTTPSHandler(context=self._tls),
            urllib.request.HTTPErrorProcessor(),
            urllib.request.HTTPDefaultErrorHandler(),
        ):
            self._opener.add_handler(handler)

    def _once(self, url: str, method: str, path: str, body: bytes, content_type: str | None) -> tuple[int, dict, bytes]:
        # Signed per attempt: the node refuses a nonce it has seen.
        headers = sign_request(self._identity, method, path, body)
        if content_type is not None:
            headers["content-type"] = content_type
        req = urllib.request.Request(url + path, data=body if body or method in ("POST", "PUT") else None,
                                     method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=TIMEOUT_S) as res:
                return res.status, dict(res.headers), res.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def _exchange(self, method: str, path: str, body: bytes, content_type: str | None) -> tuple[int, dict, bytes]:
        failures = []
        for i in range(len(self._urls)):
            at = (self._current + i) % len(self._urls)
            try:
                out = self._once(self._urls[at], method, path, body, content_type)
            except urllib.error.URLError as err:
                reason = err.reason
                # Only a connection that never carried the request moves on:
                # after a timeout the request may have been applied.
                if isinstance(reason, OSError) and not isinstance(reason, TimeoutError):
                    failures.append(f"{self._urls[at]}: {reason}")
                    continue
                raise UnreachableError(f"control plane {self._urls[at]}: {reason}") from None
            except (ConnectionError, TimeoutError) as err:
                raise UnreachableError(f"control plane {self._urls[at]}: {err}") from None
            self._current = at
            return out
        raise UnreachableError("no control-plane seed could be reached: " + "; ".join(failures))

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str | None = None
    ) -> tuple[int, dict, bytes]:
        """One signed exchange: status, headers, body bytes."""
        return await asyncio.to_thread(self._exchange, method, path, body, content_type)

    async def json(self, method: str, path: str, payload: Any = None, ok: tuple[int, ...] = ()) -> Any:
        """A JSON exchange; a status outside 2xx (and ``ok``) is a :class:`ControlPlaneError`."""
        body = json.dumps(payload).encode() if payload is not None else b""
        status, headers, data = await self.request(
            method, path, body, "application/json" if payload is not None else None
        )
        if status == 204 or (status in ok and not data):
            return None
        check(status, headers, data)
        return json.loads(data) if data else None


def check(status: int, headers: dict, data: bytes) -> None:
    """Raises the :class:`ControlPlaneError` of an answer outside 2xx."""
    if 200 <= status <= 299:
        return
    try:
        err = json.loads(data)
    except ValueError:
        err = None
    code = err.get("error", "error") if isinstance(err, dict) else "error"
    message = err.get("message", "") if isinstance(err, dict) else data[:200].decode("utf-8", "replace")
    retry = {k.lower(): v for k, v in headers.items()}.get("retry-after")
    raise ControlPlaneError(status, str(code), str(message), int(retry) if retry and retry.isdigit() else None)
