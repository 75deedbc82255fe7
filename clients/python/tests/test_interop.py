"""Python and TypeScript in one encrypted room, both ways: the TypeScript
client (through `unibus room`, `send` and `listen`, from an identity file
this package wrote) creates the room with a Python member; the Python side
verifies the log, opens its sealed key, reads the TypeScript packet and
answers with one of its own, which `unibus listen` accepts and attributes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

import unibus
from serve_process import UNIBUS, Serve, login
from unibus.room import Dropped, Room


def test_python_and_typescript_talk_both_ways_in_an_encrypted_room(serve: Serve, tmp_path: Path) -> None:
    ts, py = serve.add_user("tsuser"), serve.add_user("pyuser")
    ts_file = tmp_path / "ts.id"
    unibus.save_identity(str(ts_file), ts)  # a Python-written file, read by the TypeScript CLI
    serve.cli("room", "create", "interop.enc", "--member", py.sign_pub_hex, *serve.target(ts_file))

    status, listed = serve.request(py, "GET", "/v1/rooms")
    assert status == 200, listed
    view = next(r for r in listed["rooms"] if r["subject"] == "interop.enc")
    status, keys = serve.request(py, "GET", f"/v1/rooms/{view['id']}/keys")
    assert status == 200, keys
    room = Room(py, view, keys["keys"])
    assert room.encrypted and sorted(room.state.members) == sorted([ts.sign_pub_hex, py.sign_pub_hex])
    assert set(room.keys) == {room.state.epoch}

    async def exchange() -> tuple[list[unibus.room.Message], str]:
        nc = await login(serve, py)
        got: list[unibus.room.Message] = []
        arrived = asyncio.Event()

        async def on(msg) -> None:  # type: ignore[no-untyped-def]
            got.extend(room.open(msg.data))  # its own packets come back too, as in TypeScript
            if any(m.sender == ts.sign_pub_hex for m in got):
                arrived.set()

        await nc.subscribe("interop.enc", cb=on)
        await nc.flush()
        await asyncio.to_thread(serve.cli, "send", "interop.enc", "hello from typescript", *serve.target(ts_file))
        await asyncio.wait_for(arrived.wait(), 15)

        listen = subprocess.Popen(
            ["bash", *UNIBUS, "listen", "interop.enc", "--count", "1", "--json", "--timeout", "20s",
             *serve.target(ts_file)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=serve.env,
        )
        try:
            assert listen.stderr is not None
            line = await asyncio.to_thread(listen.stderr.readline)
            assert line.strip() == "ready", line
            await nc.publish("interop.enc", room.seal("hello from python"))
            await nc.flush()
            out, _ = await asyncio.to_thread(listen.communicate, None, 30)
        finally:
            if listen.poll() is None:
                listen.kill()
        await nc.close()
        return got, out

    got, out = asyncio.run(exchange())
    from_ts = [m for m in got if m.sender == ts.sign_pub_hex]
    assert [m.text for m in from_ts] == ["hello from typescript"]
    assert from_ts[0].sent_at is not None
    printed = json.loads(out.strip().splitlines()[-1])
    assert (printed["sender"], printed["text"], printed["handle"]) == (py.sign_pub_hex, "hello from python", "pyuser")

    # The same packet again is a replay; a packet from outside the room is not a member's.
    again = room.seal("once")
    room2 = Room(py, view, keys["keys"])
    assert room2.open(again)[0].text == "once"
    with pytest.raises(Dropped) as replayed:
        room2.open(again)
    assert replayed.value.reason == "replayed"
    # Even holding the room key, someone outside the log is not a member.
    stranger = unibus.generate_identity()
    epoch, session = room.state.epoch, os.urandom(16)
    ck0 = unibus.initial_chain_key(room.keys[epoch], room.id, epoch, stranger.sign_pub, session)
    forged = unibus.encode_packet(
        room_id=room.id, epoch=epoch, session=session, signer=stranger, encrypted=True, index=0,
        first_frame=0, frames=[b"let me in"], key=unibus.Chain(ck0).next(), sent_at=int(time.time() * 1000),
    )
    with pytest.raises(Dropped) as outsider:
        room2.open(forged)
    assert outsider.value.reason == "nonMember"
