"""clients/python/examples/two_agents.py, run as a user would, against a real
``unibus serve`` with TLS on both planes pinned to a test CA."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import unibus
from serve_process import ROOT, Serve, make_pki


def test_the_two_agents_example_runs_over_pinned_tls(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    ca = make_pki(pki)
    serve = Serve(tmp_path / "data", tls_dir=pki)
    try:
        files = []
        for name in ("scout", "planner"):
            ident = serve.add_user(name)
            unibus.save_identity(str(tmp_path / f"{name}.id"), ident)
            files.append(str(tmp_path / f"{name}.id"))
        out = subprocess.run(
            [sys.executable, str(ROOT / "clients" / "python" / "examples" / "two_agents.py"), *files, serve.nats,
             serve.http, str(ca)],
            capture_output=True, text=True, timeout=90,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [
            "scout   <- map the north ridge",
            "planner <- done: map the north ridge (from scout)",
        ]
        # Without the CA the node's certificate is not trusted: refused, in one line.
        bad = subprocess.run(
            [sys.executable, str(ROOT / "clients" / "python" / "examples" / "two_agents.py"), *files, serve.nats,
             serve.http],
            capture_output=True, text=True, timeout=90,
        )
        assert bad.returncode == 1 and len(bad.stderr.splitlines()) == 1, bad.stderr
        assert "certificate" in bad.stderr.lower() or "ssl" in bad.stderr.lower(), bad.stderr
    finally:
        serve.stop()
