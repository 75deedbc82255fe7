"""Python against a real ``unibus serve`` (enforce mode, loopback, free ports):
a stock nats-py login signed as docs/clients.md shows, a room created through
the signed HTTP API from a genesis this package signs, messages both ways
with nats-py, and the login refused once the user is revoked."""

from __future__ import annotations

import asyncio
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
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

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
        out = subprocess.run(["bash", *UNIBUS, *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

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


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    s = Serve(tmp_path_factory.mktemp("serve"))
    try:
        yield s
    finally:
        s.stop()


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


def test_a_python_program_logs_in_creates_a_room_and_talks_in_it(serve: Serve) -> None:
    ada = serve.add_user("pyada")
    bob = serve.add_user("pybob")
    room_id = os.urandom(16).hex()
    status, room = serve.request(ada, "POST", "/v1/rooms", {"change": genesis(ada, room_id, "py.plain")})
    assert status == 201, room
    assert room["id"] == room_id
    # Bob is added by a second signed change (POST /v1/rooms/:id/changes).
    add = unibus.sign_change(
        ChangeBody(room_id, 1, unibus.change_hash(unibus.SignedChange(room["changes"][0]["text"], room["changes"][0]["sig"])),
                   "add", 1, ada.sign_pub_hex, int(time.time() * 1000), member=bob.sign_pub_hex,
                   kex=bob.kex_pub_hex, kex_sig=bob.kex_sig_hex, role="member"),
        ada,
    )
    status, body = serve.request(ada, "POST", f"/v1/rooms/{room_id}/changes", {"change": {"text": add.text, "sig": add.sig}})
    assert status == 200, body
    assert sorted(m["signPub"] for m in body["members"]) == sorted([ada.sign_pub_hex, bob.sign_pub_hex])

    async def talk() -> list[tuple[str, bytes]]:
        a, b = await login(serve, ada), await login(serve, bob)
        got: list[tuple[str, bytes]] = []
        both = asyncio.Event()

        async def on(msg) -> None:  # type: ignore[no-untyped-def]
            got.append((msg.subject, msg.data))
            if len(got) == 2:
                both.set()

        await b.subscribe("py.plain", cb=on)
        await a.subscribe("py.plain", cb=on)
        await a.flush()
        await b.flush()
        await a.publish("py.plain", b"from ada")
        await a.flush()
        await asyncio.wait_for(both.wait(), 10)
        # Outside its rooms a user may not publish: nats-server refuses the subject.
        await a.publish("not.a.room.of.ada", b"x")
        await a.flush(timeout=2)
        await asyncio.sleep(0.5)
        assert "permissions violation for publish" in str(a.last_error)
        await a.close()
        await b.close()
        return got

    got = asyncio.run(talk())
    assert sorted(got) == [("py.plain", b"from ada"), ("py.plain", b"from ada")]


def test_a_revoked_user_is_cut_and_cannot_log_in_again(serve: Serve) -> None:
    eve = serve.add_user("pyeve")

    async def once() -> None:
        nc = await login(serve, eve)
        await nc.close()

    async def cut_by_revoke() -> bool:
        nc = await login(serve, eve)
        serve.cli("user", "revoke", eve.sign_pub_hex, "--db", str(serve.data_dir / "unibus.db"))
        for _ in range(100):  # at most 10 s
            if not nc.is_connected:
                return True
            await asyncio.sleep(0.1)
        await nc.close()
        return False

    asyncio.run(once())
    assert asyncio.run(cut_by_revoke()), "the live connection outlived the revoke"
    with pytest.raises(Exception) as refused:
        asyncio.run(once())
    assert "Authorization Violation" in str(refused.value)
