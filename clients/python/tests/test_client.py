"""The asyncio client (``unibus.connect``) against a real ``unibus serve``:
rooms made and changed, messages one by one and batched, ``async for``,
request/reply, history, blobs, a member added (a new epoch and key) and one
removed (cut, and reading nothing after), packets a member forges, replays or
dates too early each refused, and a revoked user cut and refused at login."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import pytest

import unibus
from serve_process import Serve


async def client_of(serve: Serve, ident: unibus.Identity) -> unibus.Client:
    return await unibus.connect([serve.nats], [serve.http], ident)


async def until(check: Callable[[], bool | Awaitable[bool]], what: str, seconds: float = 15) -> None:
    """Polls ``check`` every 50 ms, at most ``seconds``."""
    for _ in range(int(seconds / 0.05)):
        got = check()
        if not isinstance(got, bool):
            got = await got
        if got:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_python_agents_share_an_encrypted_persisted_room(serve: Serve) -> None:
    ada, bob = serve.add_user("cada"), serve.add_user("cbob")

    async def scenario() -> None:
        async with await client_of(serve, ada) as a, await client_of(serve, bob) as b:
            room = await a.create_room("py.team", policy=["encrypt", "sign", "persist"], members=[bob.sign_pub_hex])
            assert (len(room.id), room.subject, room.policy) == (32, "py.team", ("encrypt", "sign", "persist"))
            assert [r.subject for r in await b.list_rooms()] == ["py.team"]
            await b.refresh_session()  # bob was connected before he was added

            got: list[unibus.Message] = []
            sub = await b.subscribe("py.team", got.append)
            await a.publish(room, "one")
            await a.publish_many(room, ["two", b"three"])
            await a.flush()  # stored: the stream acknowledged every packet
            await until(lambda: len(got) == 3, "three messages")
            assert [m.text for m in got] == ["one", "two", "three"]
            assert {(m.sender, m.handle) for m in got} == {(ada.sign_pub_hex, "cada")}
            # The batch is one packet: one session, consecutive frame indices.
            assert got[1].session == got[2].session and got[2].index == got[1].index + 1
            assert got[0].time is not None and abs(got[0].time.timestamp() - time.time()) < 60
            assert sub.stats["delivered"] == 3

            # `async for`, ending with the loop.
            async def first_of_stream() -> unibus.Message:
                async for m in b.messages(room):
                    return m
                raise AssertionError("the stream ended")

            reader = asyncio.ensure_future(first_of_stream())
            await asyncio.sleep(0.3)
            await a.publish(room, "four")
            assert (await asyncio.wait_for(reader, 10)).text == "four"
            await a.flush()

            history = await b.history(room)
            assert [m.text for m in history] == ["one", "two", "three", "four"]
            assert all(m.seq is not None for m in history) and history[0].seq < history[-1].seq
            assert [m.text for m in await b.history(room, limit=2)] == ["one", "two"]

            # A blob: stored sealed, its key sent in the room, opened by bob.
            blob = await a.put_blob(room, b"report " * 1000)
            assert await b.get_blob(room, unibus.BlobRef.from_dict(blob.as_dict())) == b"report " * 1000
            tampered = unibus.BlobRef(blob.id, unibus.BlobRef(blob.id, blob.key, 1).key[:-4] + "AAA=", blob.size)
            with pytest.raises(unibus.MembershipVerificationError):
                await b.get_blob(room, tampered)
            await sub.unsubscribe()

    asyncio.run(scenario())


def test_request_and_reply_between_python_agents(serve: Serve) -> None:
    ada, bob = serve.add_user("rada"), serve.add_user("rbob")

    async def scenario() -> None:
        async with await client_of(serve, ada) as a, await client_of(serve, bob) as b:
            room = await a.create_room("py.rpc", members=[bob.sign_pub_hex])
            await b.refresh_session()

            async def answer(m: unibus.Message) -> str:
                await asyncio.sleep(0)
                return f"re: {m.text}"

            await b.respond(room, answer)
            reply = await a.request(room, "ping", timeout=10)
            assert (reply.text, reply.sender, reply.handle) == ("re: ping", bob.sign_pub_hex, "rbob")
            # Sync handlers too, and each direction.
            await a.respond(room, lambda m: (m.data or b"").upper())
            assert (await b.request(room, b"pong", timeout=10)).data == b"PONG"

            quiet = await a.create_room("py.quiet")
            with pytest.raises(unibus.NoRespondersError):
                await a.request(quiet, "anyone?", timeout=5)
            slow = await a.create_room("py.slow", policy=["sign", "persist"])
            await a.subscribe(slow, lambda m: None)  # hears it, never answers
            with pytest.raises(unibus.RequestTimeoutError):
                await a.request(slow, "anyone?", timeout=1)
            # A reply goes only under the proven requester's inbox.
            fake = unibus.Message(room.id, "py.rpc", bob.sign_pub_hex, 0, "00" * 16, 0, None, b"x",
                                  reply="py.rpc")
            with pytest.raises(unibus.UnibusError) as refused:
                await a.reply(fake, "no")
            assert refused.value.code == "reply_refused"

    asyncio.run(scenario())


def test_membership_changes_rotate_the_key_and_a_removed_member_is_cut(serve: Serve) -> None:
    ada, bob, cid = serve.add_user("mada"), serve.add_user("mbob"), serve.add_user("mcid")

    async def scenario() -> None:
        async with (
            await client_of(serve, ada) as a,
            await client_of(serve, bob) as b,
            await client_of(serve, cid) as c,
        ):
            room = await a.create_room("py.members", members=[bob.sign_pub_hex])
            await b.refresh_session()
            bob_got: list[unibus.Message] = []
            await b.subscribe(room, bob_got.append)

            room = await a.add_member(room, cid.sign_pub_hex)
            assert room.state.epoch == 1 and set(room.keys) >= {1}
            await until(lambda: cid.sign_pub_hex in b._rooms[room.id].state.members, "bob learns of cid")
            await c.refresh_session()
            cid_got: list[unibus.Message] = []
            await c.subscribe(room, cid_got.append)
            await a.publish(room, "welcome")
            await until(lambda: [m.text for m in cid_got] == ["welcome"] and len(bob_got) == 1, "welcome")
            assert {m.epoch for m in cid_got + bob_got} == {1}

            room = await a.remove_member(room, bob.sign_pub_hex)
            assert room.state.epoch == 2 and bob.sign_pub_hex not in room.state.members
            # The node cuts bob; his client reconnects with the smaller ACL and drops the room.
            await until(lambda: room.id not in b._rooms, "bob's client drops the room")
            await a.publish(room, "after bob")
            await until(lambda: [m.text for m in cid_got] == ["welcome", "after bob"], "cid hears on")
            await asyncio.sleep(0.5)
            assert [m.text for m in bob_got] == ["welcome"]
            with pytest.raises(unibus.ControlPlaneError) as gone:
                await b.publish(room.id, "still here?")
            assert gone.value.status == 404
            # The epoch-2 key was sealed to nobody bob could be.
            status, keys = serve.request(cid, "GET", f"/v1/rooms/{room.id}/keys")
            assert status == 200 and 2 in {k["epoch"] for k in keys["keys"]}

            # cid leaves on its own authority; the last admin cannot.
            await c.leave(room)
            with pytest.raises(unibus.ControlPlaneError) as last:
                await a.leave(room)
            assert (last.value.status, last.value.code) == (409, "last_admin")
            await a.delete_room(room)
            assert all(r.id != room.id for r in await a.list_rooms())

    asyncio.run(scenario())


def test_forged_replayed_and_stale_packets_are_refused(serve: Serve) -> None:
    ada, bob = serve.add_user("fada"), serve.add_user("fbob")
    eve = unibus.generate_identity("eve")  # never a member, never registered

    async def scenario() -> None:
        async with await client_of(serve, ada) as a, await client_of(serve, bob) as b:
            room = await a.create_room("py.guarded", members=[bob.sign_pub_hex])
            await b.refresh_session()
            got: list[unibus.Message] = []
            sub = await a.subscribe(room, got.append)
            # Bob, a member, captures his own genuine packet on the wire...
            wire: list[bytes] = []

            async def capture(msg) -> None:  # type: ignore[no-untyped-def]
                wire.append(msg.data)

            await b.nats.subscribe(room.subject, cb=capture)
            await b.nats.flush()
            await b.publish(room, "genuine")
            await until(lambda: len(got) == 1 and len(wire) == 1, "the genuine message")
            held = b._rooms[room.id]
            epoch, key = held.state.epoch, held.keys[held.state.epoch]

            def packet(signer: unibus.Identity, sent_at: int, text: bytes) -> bytes:
                session = os.urandom(16)
                ck0 = unibus.initial_chain_key(key, room.id, epoch, signer.sign_pub, session)
                return unibus.encode_packet(
                    room_id=room.id, epoch=epoch, session=session, signer=signer, encrypted=True, index=0,
                    first_frame=0, frames=[text], key=unibus.Chain(ck0).next(), sent_at=sent_at,
                )

            now = int(time.time() * 1000)
            tampered = bytearray(wire[0])
            tampered[-70] ^= 1
            for bad in (
                wire[0],  # replayed: the same bytes again
                packet(eve, now, b"forged: eve is no member"),
                bytes(tampered),  # forged: altered in flight
                packet(bob, now - 60_000, b"stale: signed before ada listened"),
                packet(bob, now + 120_000, b"dated ahead, to replay later"),
            ):
                await b.nats.publish(room.subject, bad)
            await b.publish(room, "still heard")
            await until(lambda: len(got) == 2, "the second genuine message")
            assert [m.text for m in got] == ["genuine", "still heard"]
            stats = sub.stats
            assert (stats["replayed"], stats["nonMember"], stats["invalid"]) == (3, 1, 1), stats

    asyncio.run(scenario())


def test_a_revoked_client_is_cut_and_refused_at_login(serve: Serve) -> None:
    mal = serve.add_user("cmal")

    async def scenario() -> None:
        c = await client_of(serve, mal)
        await asyncio.to_thread(
            serve.cli, "user", "revoke", mal.sign_pub_hex, "--db", str(serve.data_dir / "unibus.db")
        )
        await until(lambda: not c.is_connected(), "the cut")
        await c.close()
        with pytest.raises(unibus.UnreachableError) as refused:
            await client_of(serve, mal)
        assert "authorization" in str(refused.value)
        with pytest.raises(unibus.ClosedError):
            await c.publish("anything", "x")

    asyncio.run(scenario())
