"""unibus.Room without a server: the vectors' room (Alice admin, Bob member,
epoch 3) and the receive rules' bounds."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest

import unibus
from unibus.room import MAX_SESSIONS_PER_SENDER, Dropped, Room

V = json.loads((Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "e2e_vectors.json").read_text())
IDS = {n: unibus.Identity(bytes.fromhex(v["signSeedHex"]), bytes.fromhex(v["kexPrivHex"])) for n, v in V["identities"].items()}
ROOM_ID, EPOCH = V["room"]["id"], V["roomKey"]["epoch"]
ROOM_KEY = bytes.fromhex(V["roomKey"]["roomKeyHex"])
VIEW = {"id": ROOM_ID, "changes": [{"text": c["text"], "sig": c["sigBase64"]} for c in V["membership"]["changes"]]}


def room_of(name: str, sealed_by: str = "alice") -> Room:
    me, admin = IDS[name], IDS[sealed_by]
    envelope = unibus.seal_room_key(ROOM_ID, EPOCH, ROOM_KEY, me.sign_pub, me.kex_pub, admin)
    keys = [{"epoch": EPOCH, "sealed": base64.b64encode(envelope).decode(), "sealedBy": admin.sign_pub_hex}]
    return Room(me, VIEW, keys)


def test_a_member_opens_another_members_packets_in_order_once() -> None:
    alice, bob = room_of("alice"), room_of("bob")
    first, second = alice.seal("one"), alice.seal("two")
    assert [m.text for m in bob.open(first)] == ["one"]
    assert [m.text for m in bob.open(second)] == ["two"]
    with pytest.raises(Dropped) as again:
        bob.open(first)
    assert again.value.reason == "replayed"


def test_a_key_sealed_by_a_non_admin_is_not_taken() -> None:
    assert room_of("bob", sealed_by="bob").keys == {}


def test_a_packet_skipping_too_far_ahead_is_refused_before_any_ratchet_work() -> None:
    alice, bob = IDS["alice"], room_of("bob")
    session = os.urandom(16)
    far = unibus.encode_packet(
        room_id=ROOM_ID, epoch=EPOCH, session=session, signer=alice, encrypted=True, index=4_000_000_000,
        first_frame=0, frames=[b"x"], key=bytes(32), sent_at=int(time.time() * 1000),
    )
    t0 = time.perf_counter()
    with pytest.raises(Dropped) as refused:
        bob.open(far)
    assert refused.value.reason == "invalid" and "too far" in str(refused.value)
    assert time.perf_counter() - t0 < 1


def test_a_senders_sessions_are_bounded_and_a_pushed_out_one_stays_closed() -> None:
    bob = room_of("bob")
    senders = [room_of("alice") for _ in range(MAX_SESSIONS_PER_SENDER + 1)]
    for s in senders:
        bob.open(s.seal("hi"))
    # The first session was pushed out by the 65th: its next packet, new as it
    # is, is refused rather than started again at CK_0.
    with pytest.raises(Dropped) as closed:
        bob.open(senders[0].seal("later"))
    assert closed.value.reason == "replayed" and "retired" in str(closed.value)
    # The newest sessions still deliver.
    assert [m.text for m in bob.open(senders[-1].seal("still"))] == ["still"]
