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


def stop_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to a process group started with ``start_new_session``, SIGKILL after ``grace_s``."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def make_pki(dir: Path) -> Path:
    """A test CA and a server certificate for 127.0.0.1 (openssl), as
    tests/helpers/tls.ts makes them; returns the CA file."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run([os.environ.get("UNIBUS_OPENSSL", "openssl"), *args], cwd=dir, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=unibus test CA")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (dir / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")
    os.chmod(dir / "server.key", 0o600)
    return dir / "ca.crt"


class Serve:
    """``unibus serve`` in enforce mode; with ``tls_dir`` (from :func:`make_pki`) TLS on both planes."""

    def __init__(self, data_dir: Path, tls_dir: Path | None = None) -> None:
        self.data_dir = data_dir
        self.nats_port = free_port()
        tls = []
        if tls_dir is not None:
            tls = ["--tls-cert", str(tls_dir / "server.crt"), "--tls-key", str(tls_dir / "server.key"),
                   "--tls-ca", str(tls_dir / "ca.crt")]
        self.proc = subprocess.Popen(
            ["bash", *UNIBUS, "serve", "--data-dir", str(data_dir), "--http-addr", "127.0.0.1:0",
             "--nats-port", str(self.nats_port), "--bus-auth", "enforce", *tls],
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
        self.http = f"{'https' if tls else 'http'}://{ready['httpAddr']}"
        # The CLI's own contexts stay out of the tests: an empty config home.
        self.env = {**os.environ, "XDG_CONFIG_HOME": str(data_dir / "config"), "NO_COLOR": "1"}
        self.nats = f"{'tls' if tls else 'nats'}://127.0.0.1:{self.nats_port}"

    def stop(self) -> None:
        stop_group(self.proc, 20)

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



class TsPeer:
    """The TypeScript client in a process of its own (``ts_peer.ts``),
    driven by JSON lines: ``call`` sends one command and returns its answer;
    what its subscriptions deliver collects in ``messages``."""

    def __init__(self, serve: Serve, id_file: Path) -> None:
        script = (
            'source "$1/scripts/setup"; unibus_setup all >&2; export DENO_NO_UPDATE_CHECK=1; '
            'exec "$UNIBUS_DENO" run --quiet --frozen --allow-all "$1/clients/python/tests/ts_peer.ts" "$2" "$3" "$4"'
        )
        self.proc = subprocess.Popen(
            ["bash", "-c", script, "ts_peer", str(ROOT), str(id_file), serve.nats, serve.http],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=serve.env,
            start_new_session=True,
        )
        self.messages: list[dict] = []
        self._answers: dict[int, dict] = {}
        self._cond = threading.Condition()
        self._next = 0
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self._wait(lambda: self._answers.get(-1), 90, "the TypeScript peer did not start")
        except BaseException:
            self.stop()  # the caller never gets it to stop
            raise

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            obj = json.loads(line)
            with self._cond:
                if obj.get("event") == "ready":
                    self._answers[-1] = obj
                elif obj.get("event") == "message":
                    self.messages.append(obj)
                else:
                    self._answers[obj["id"]] = obj
                self._cond.notify_all()

    def _wait(self, ready, timeout: float, what: str):  # type: ignore[no-untyped-def]
        with self._cond:
            if not self._cond.wait_for(ready, timeout):
                err = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
                raise TimeoutError(f"{what} {err}")
            return ready()

    def call(self, op: str, timeout: float = 30, **args: object) -> dict:
        self._next += 1
        cid = self._next
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": cid, "op": op, **args}) + "\n")
        self.proc.stdin.flush()
        answer = self._wait(lambda: self._answers.get(cid), timeout, f"no answer to {op}")
        if not answer["ok"]:
            raise RuntimeError(f"TypeScript peer: {op}: {answer['error']}")
        return answer

    def wait_messages(self, pred, timeout: float = 15) -> list[dict]:  # type: ignore[no-untyped-def]
        return self._wait(lambda: [m for m in self.messages if pred(m)] or None, timeout, "no such message")

    def stop(self) -> None:
        stop_group(self.proc, 10)
