"""The ``serve`` fixture: one real ``unibus serve`` per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serve_process import Serve


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    s = Serve(tmp_path_factory.mktemp("serve"))
    try:
        yield s
    finally:
        s.stop()
