"""Python against a real ``unibus serve`` (enforce mode, loopback, free ports):
a stock nats-py login signed as docs/clients.md shows, a room created through
the signed HTTP API from a genesis this package signs, messages both ways
with nats-py, and a revoked user cut and refused."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

import unibus
from serve_process import Serve, genesis, login
from unibus.membership import ChangeBody


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
