"""A real ``unibus serve`` for the Python tests (enforce mode, loopback,
free ports), and what a Python program needs to log in and make a room."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import nats

import unibus
from unibus.membership import ChangeBody
from unibus.wire import sign_request, user_nkey

ROOT = Path(__file__).resolve().parents[3]
UNIBUS = [str(ROOT / "scripts" / "unibus")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.nats_port = free_port()
        self.proc = subprocess.Popen(
            ["bash", *UNIBUS, "serve", "--data-dir", str(data_dir), "--http-addr", "127.0.0.1:0",
             "--nats-port", str(self.nats_port), "--bus-auth", "enforce"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        ready: dict = {}
        got = threading.Event()
        self.lines: list[str] = []

        def drain() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                if not got.is_set() and '"unibus ready"' in line:
                    ready.update(json.loads(line))
                    got.set()

        threading.Thread(target=drain, daemon=True).start()
        if not got.wait(90):
            self.stop()
            raise RuntimeError("serve did not become ready:\n" + "".join(self.lines[-30:]))
        self.http = f"http://{ready['httpAddr']}"
        # The CLI's own contexts stay out of the tests: an empty config home.
        self.env = {**os.environ, "XDG_CONFIG_HOME": str(data_dir / "config"), "NO_COLOR": "1"}
        self.nats = f"nats://127.0.0.1:{self.nats_port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def cli(self, *args: str) -> str:
        out = subprocess.run(["bash", *UNIBUS, *args], capture_output=True, text=True, timeout=60, env=self.env)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def target(self, id_file: Path) -> list[str]:
        """The client commands' flags for this serve, speaking as ``id_file``."""
        return ["--identity-file", str(id_file), "--nats-seeds", self.nats, "--ctrl-seeds", self.http]

    def add_user(self, handle: str) -> unibus.Identity:
        ident = unibus.generate_identity(handle)
        self.cli("user", "add", "--handle", handle, "--sign-pub", ident.sign_pub_hex, "--kex-pub",
                 ident.kex_pub_hex, "--kex-sig", ident.kex_sig_hex, "--role", "member",
                 "--db", str(self.data_dir / "unibus.db"))
        return ident

    def request(self, ident: unibus.Identity, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else b""
        headers = sign_request(ident, method, path, data)
        if body is not None:
            headers["content-type"] = "application/json"
        req = urllib.request.Request(self.http + path, data=data or None, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                return res.status, json.loads(res.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")


async def login(s: Serve, ident: unibus.Identity) -> nats.NATS:
    """A login of ``ident``. nats-py's public API cannot send a public nkey with its own signer:
    the private ``_public_nkey`` and an unused token make it (docs/clients.md)."""

    def sign(nonce: str) -> bytes:
        if not re.fullmatch(r"[A-Za-z0-9_-]{8,64}", nonce):
            raise ValueError("not a nonce")
        return base64.b64encode(ident.sign(b"unibus/nats-auth/v1\n" + nonce.encode()))

    nc = nats.NATS()
    nc._public_nkey = user_nkey(ident.sign_pub)  # noqa: SLF001 - see the docstring
    await nc.connect(s.nats, signature_cb=sign, token="unused", inbox_prefix=f"_INBOX.{ident.sign_pub_hex}",
                     allow_reconnect=False, connect_timeout=5, max_reconnect_attempts=0)
    return nc


def genesis(ident: unibus.Identity, room_id: str, subject: str) -> dict:
    change = unibus.sign_change(
        ChangeBody(room_id, 0, "0" * 64, "create", 0, ident.sign_pub_hex, int(time.time() * 1000),
                   subject=subject, policy=(), member=ident.sign_pub_hex, kex=ident.kex_pub_hex,
                   kex_sig=ident.kex_sig_hex, role="admin"),
        ident,
    )
    return {"text": change.text, "sig": change.sig}


