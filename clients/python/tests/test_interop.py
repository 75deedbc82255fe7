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
from serve_process import UNIBUS, Serve, TsPeer, login
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


def test_the_python_and_typescript_clients_share_a_room_through_its_whole_life(serve: Serve, tmp_path: Path) -> None:
    """Messages and batched packets each way, request/reply each way, history
    read by both, a member added by TypeScript (a new epoch the Python client
    follows) and the Python member removed by TypeScript (cut, hearing nothing after)."""
    ts, py, late = serve.add_user("itsx"), serve.add_user("ipyx"), serve.add_user("ilate")
    ts_file = tmp_path / "ts.id"
    unibus.save_identity(str(ts_file), ts)
    peer = TsPeer(serve, ts_file)
    try:
        room_id = peer.call("create", subject="interop.life", members=[py.sign_pub_hex],
                            policy={"encrypt": True, "sign": True, "persist": True})["room"]
        peer.call("subscribe", room=room_id)
        peer.call("respond", room=room_id)

        async def scenario() -> None:
            async with await unibus.connect([serve.nats], [serve.http], py) as c:
                got: list[unibus.Message] = []
                await c.subscribe(room_id, got.append)
                packets: list[unibus.Packet] = []

                async def count(msg) -> None:  # type: ignore[no-untyped-def]
                    packets.append(unibus.decode_packet(room_id, msg.data))

                await c.nats.subscribe(f"$UNIBUS.ROOM.{room_id}", cb=count)
                await c.nats.flush()

                # TypeScript → Python: three publishes in one tick are one packet.
                await asyncio.to_thread(peer.call, "publish", room=room_id, texts=["b1", "b2", "b3"])
                await wait_until(lambda: len(got) == 3, "the batch")
                assert [m.text for m in got] == ["b1", "b2", "b3"]
                assert {(m.sender, m.handle) for m in got} == {(ts.sign_pub_hex, "itsx")}
                from_ts = [p for p in packets if p.sender == ts.sign_pub]
                assert [(p.count, p.first_frame) for p in from_ts] == [(3, 0)]

                # Python → TypeScript, one packet of two frames.
                await c.publish_many(room_id, ["p1", "p2"])
                await c.flush()
                try:
                    heard = await asyncio.to_thread(
                        peer.wait_messages, lambda m: m["sender"] == py.sign_pub_hex and m["text"] == "p2"
                    )
                except TimeoutError:
                    raise AssertionError(f"{peer.messages} {peer.call('stats', room=room_id)}") from None
                assert heard[0]["epoch"] == 0

                # Request/reply each way.
                reply = await c.request(room_id, "q1", timeout=10)
                assert (reply.text, reply.sender) == ("ts echo: q1", ts.sign_pub_hex)
                await c.respond(room_id, lambda m: f"py echo: {m.text}" if m.sender != py.sign_pub_hex else None)
                answer = await asyncio.to_thread(peer.call, "request", room=room_id, text="q2")
                assert (answer["text"], answer["sender"]) == ("py echo: q2", py.sign_pub_hex)

                # History, read by each: the same stored packets in the same order.
                mine = [m.text for m in await c.history(room_id)]
                theirs = (await asyncio.to_thread(peer.call, "history", room=room_id))["texts"]
                assert mine == theirs
                assert [t for t in mine if t in ("b1", "b2", "b3", "p1", "p2")] == ["b1", "b2", "b3", "p1", "p2"]

                # TypeScript adds a member: epoch 1, which Python follows and sends in.
                assert (await asyncio.to_thread(peer.call, "add", room=room_id, member=late.sign_pub_hex))["epoch"] == 1
                await asyncio.to_thread(peer.call, "publish", room=room_id, texts=["in epoch 1"])
                await wait_until(lambda: got[-1].text == "in epoch 1", "the epoch-1 message")
                assert got[-1].epoch == 1
                await c.publish(room_id, "py in epoch 1")
                heard = await asyncio.to_thread(peer.wait_messages, lambda m: m["text"] == "py in epoch 1")
                assert heard[0]["epoch"] == 1

                # TypeScript removes the Python member: cut, and deaf to what follows.
                assert (await asyncio.to_thread(peer.call, "remove", room=room_id, member=py.sign_pub_hex))["epoch"] == 2
                await wait_until(lambda: room_id not in c._rooms, "the Python client drops the room")
                before = len(got)
                await asyncio.to_thread(peer.call, "publish", room=room_id, texts=["after removal"])
                await asyncio.sleep(0.5)
                assert len(got) == before

        asyncio.run(scenario())
    finally:
        peer.stop()


async def wait_until(check, what: str, seconds: float = 15) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
