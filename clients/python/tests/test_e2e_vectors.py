"""tests/fixtures/e2e_vectors.json, recomputed in Python byte for byte: the
same normative vectors the TypeScript client and libsodium check."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

import unibus
from unibus.e2e import body_aad, hkdf_sha256, lp, u32
from unibus.membership import ChangeBody, MemberEntry

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures"
V = json.loads((FIXTURES / "e2e_vectors.json").read_text())
IDS = {
    name: unibus.Identity(bytes.fromhex(v["signSeedHex"]), bytes.fromhex(v["kexPrivHex"]))
    for name, v in V["identities"].items()
}


def changes_of(vectors: dict) -> list[unibus.SignedChange]:
    return [unibus.SignedChange(c["text"], c["sigBase64"]) for c in vectors["changes"]]


@pytest.mark.parametrize("name", ["alice", "bob", "carol"])
def test_identities_derive_their_keys_and_kex_binding(name: str) -> None:
    v, ident = V["identities"][name], IDS[name]
    assert ident.sign_pub_hex == v["signPubHex"]
    assert ident.kex_pub_hex == v["kexPubHex"]
    assert unibus.kex_binding_message(v["signPubHex"], v["kexPubHex"]).decode() == v["kexBindingMessageUtf8"]
    assert ident.kex_sig_hex == v["kexSigHex"]
    assert unibus.verify_kex_binding(v["signPubHex"], v["kexPubHex"], v["kexSigHex"])
    assert not unibus.verify_kex_binding(v["signPubHex"], V["identities"]["carol" if name != "carol" else "bob"]["kexPubHex"], v["kexSigHex"])


@pytest.mark.parametrize("log", ["membership", "membershipBulk", "membershipCreateMany"])
def test_membership_texts_signatures_and_hashes_recompute_and_verify(log: str) -> None:
    vectors = V[log]
    for c in vectors["changes"]:
        body = unibus.parse_change(c["text"])
        assert unibus.change_text(body) == c["text"]
        signer = next(i for i in IDS.values() if i.sign_pub_hex == body.by)
        again = unibus.sign_change(body, signer)  # Ed25519 is deterministic
        assert again.sig == c["sigBase64"]
        assert base64.b64decode(c["sigBase64"]).hex() == c["sigHex"]
        assert unibus.change_hash(unibus.SignedChange(c["text"], c["sigBase64"])) == c["hashHex"]
    state = unibus.verify_log(V["room"]["id"], changes_of(vectors))
    final = vectors["final"]
    assert (state.epoch, state.seq, state.head) == (final["epoch"], final["seq"], final["headHex"])
    want = {m["signPubHex"]: (m["kexPubHex"], m["role"]) for m in final["members"]}
    assert {k: (m.kex, m.role) for k, m in state.members.items()} == want
    for epoch, members in final["epochs"].items():
        assert sorted(state.epochs[int(epoch)]) == sorted(m["signPubHex"] for m in members)


@pytest.mark.parametrize("case", V["membershipRefused"], ids=lambda c: c["name"])
def test_logs_breaking_a_several_member_rule_are_refused(case: dict) -> None:
    changes = changes_of(case)
    with pytest.raises(unibus.MembershipError):
        unibus.verify_log(V["room"]["id"], changes)
    if len(changes) > 1:
        unibus.verify_log(V["room"]["id"], changes[:-1])


def test_a_log_is_refused_for_another_room_a_forged_signature_or_a_missing_admin() -> None:
    changes = changes_of(V["membership"])
    with pytest.raises(unibus.MembershipError, match="another room"):
        unibus.verify_log("0" * 32, changes)
    forged = list(changes)
    forged[1] = unibus.SignedChange(changes[1].text, changes[2].sig)
    with pytest.raises(unibus.MembershipError, match="does not verify"):
        unibus.verify_log(V["room"]["id"], forged)
    # Bob (a member, not an admin) signs an add of Carol: refused.
    body = unibus.parse_change(changes[2].text)
    body.by = IDS["bob"].sign_pub_hex
    by_member = unibus.sign_change(body, IDS["bob"])
    with pytest.raises(unibus.MembershipError, match="not an admin"):
        unibus.verify_log(V["room"]["id"], changes[:2] + [by_member])
    # CRLF line ends are not the canonical text.
    with pytest.raises(unibus.MembershipError):
        unibus.parse_change(changes[0].text.replace("\n", "\r\n"))


def test_the_sealed_room_key_reproduces_with_the_fixed_ephemeral_key_and_opens() -> None:
    v = V["roomKey"]
    alice, bob = IDS[v["admin"]], IDS[v["member"]]
    room_key = bytes.fromhex(v["roomKeyHex"])
    assert (lp(v["roomId"]) + u32(v["epoch"]) + room_key).hex() == v["sealedPlaintextHex"]
    envelope = unibus.seal_room_key(
        v["roomId"], v["epoch"], room_key, bob.sign_pub, bob.kex_pub, alice, bytes.fromhex(v["ephemeralSecretHex"])
    )
    assert envelope.hex() == v["envelopeHex"]
    assert envelope[:-64].hex() == v["sealedHex"]
    assert envelope[:32].hex() == v["ephemeralPublicHex"]
    assert unibus.open_room_key(v["roomId"], v["epoch"], envelope, bob, alice.sign_pub) == room_key
    # A random ephemeral key seals too, and only the member opens it.
    fresh = unibus.seal_room_key(v["roomId"], v["epoch"], room_key, bob.sign_pub, bob.kex_pub, alice)
    assert unibus.open_room_key(v["roomId"], v["epoch"], fresh, bob, alice.sign_pub) == room_key
    with pytest.raises(unibus.RoomKeyError):
        unibus.open_room_key(v["roomId"], v["epoch"], fresh, IDS["carol"], alice.sign_pub)
    with pytest.raises(unibus.RoomKeyError):
        unibus.open_room_key(v["roomId"], v["epoch"] + 1, envelope, bob, alice.sign_pub)


def test_hkdf_gives_ck0_and_each_step_gives_mk_and_the_next_ck() -> None:
    v = V["chain"]
    room_key = bytes.fromhex(v["roomKeyHex"])
    sender, session = bytes.fromhex(v["senderHex"]), bytes.fromhex(v["sessionHex"])
    info = b"unibus/chain/v2" + lp(v["roomId"]) + u32(v["epoch"]) + sender + session
    assert info.hex() == v["hkdfInfoHex"]
    ck0 = unibus.initial_chain_key(room_key, v["roomId"], v["epoch"], sender, session)
    assert ck0.hex() == v["chainKeysHex"][0]
    chain = unibus.Chain(ck0)
    for i, mk in enumerate(v["messageKeysHex"]):
        assert chain.next().hex() == mk, f"MK_{i}"
    step = hkdf_sha256(bytes.fromhex(v["chainKeysHex"][1]), bytes(32), b"unibus/step/v2", 64)
    assert (step[:32].hex(), step[32:].hex()) == (v["messageKeysHex"][1], v["chainKeysHex"][2])


def _mk(index: int) -> bytes:
    return bytes.fromhex(V["chain"]["messageKeysHex"][index])


def test_the_encrypted_packet_reencodes_byte_for_byte_decodes_and_decrypts() -> None:
    v = next(p for p in V["packets"] if p["name"] == "encrypted-two-frames")
    data = unibus.encode_packet(
        room_id=v["roomId"],
        epoch=v["epoch"],
        session=bytes.fromhex(v["sessionHex"]),
        signer=IDS[v["sender"]],
        encrypted=True,
        index=v["index"],
        first_frame=v["firstFrame"],
        frames=[f.encode() for f in v["framesUtf8"]],
        key=_mk(v["index"]),
        nonce=bytes.fromhex(v["nonceHex"]),
    )
    assert data.hex() == v["packetHex"]
    assert data[:80].hex() == v["headerHex"]
    assert body_aad(v["roomId"], data[:80]).hex() == v["aadHex"]
    assert hashlib.sha256(data[:-64]).hexdigest() == v["digestHex"]
    p = unibus.decode_packet(v["roomId"], data)
    assert (p.encrypted, p.epoch, p.index, p.first_frame, p.count, p.sent_at) == (
        True, v["epoch"], v["index"], v["firstFrame"], 2, None,
    )
    assert [f.decode() for f in unibus.open_packet(v["roomId"], p, _mk(v["index"]))] == v["framesUtf8"]
    with pytest.raises(unibus.PacketError):
        unibus.decode_packet("0" * 32, data)  # another room's signature context
    tampered = bytearray(data)
    tampered[100] ^= 1
    with pytest.raises(unibus.PacketError):
        unibus.decode_packet(v["roomId"], bytes(tampered))


def test_the_sign_only_packet_reencodes_with_flag_0_and_a_zero_nonce() -> None:
    v = next(p for p in V["packets"] if p["name"] == "sign-only-one-frame")
    data = unibus.encode_packet(
        room_id=v["roomId"],
        epoch=v["epoch"],
        session=bytes.fromhex(v["sessionHex"]),
        signer=IDS[v["sender"]],
        encrypted=False,
        index=v["index"],
        first_frame=v["firstFrame"],
        frames=[f.encode() for f in v["framesUtf8"]],
    )
    assert data.hex() == v["packetHex"]
    p = unibus.decode_packet(v["roomId"], data)
    assert not p.encrypted and p.nonce == bytes(12)
    assert [f.decode() for f in unibus.open_packet(v["roomId"], p, None)] == v["framesUtf8"]


def test_the_timed_request_and_its_reply_reencode_byte_for_byte() -> None:
    t, r = V["timedPacket"], V["reply"]
    bob, alice = IDS[t["sender"]], IDS[r["replier"]]
    request = unibus.encode_packet(
        room_id=t["roomId"],
        epoch=t["epoch"],
        session=bytes.fromhex(t["sessionHex"]),
        signer=bob,
        encrypted=True,
        index=t["index"],
        first_frame=t["firstFrame"],
        frames=[f.encode() for f in t["framesUtf8"]],
        key=_mk(t["index"]),
        sent_at=t["sentAtMs"],
        nonce=bytes.fromhex(t["nonceHex"]),
    )
    assert request.hex() == t["packetHex"]
    assert request[:88].hex() == t["headerHex"] and request[4] == 3
    p = unibus.decode_packet(t["roomId"], request)
    assert p.sent_at == t["sentAtMs"]

    session = unibus.reply_session(bob.sign_pub, p.session, p.epoch, p.first_frame)
    assert session.hex() == r["replySessionHex"]
    ck0 = unibus.initial_chain_key(bytes.fromhex(V["roomKey"]["roomKeyHex"]), t["roomId"], r["epoch"], alice.sign_pub, session)
    assert ck0.hex() == r["chainKey0Hex"]
    mk0 = unibus.Chain(ck0).next()
    assert mk0.hex() == r["messageKeyHex"]
    reply = unibus.encode_packet(
        room_id=t["roomId"],
        epoch=r["epoch"],
        session=session,
        signer=alice,
        encrypted=True,
        index=0,
        first_frame=0,
        frames=[r["frameUtf8"].encode()],
        key=mk0,
        sent_at=r["sentAtMs"],
        nonce=bytes.fromhex(r["nonceHex"]),
    )
    assert reply.hex() == r["packetHex"]


def test_a_v1_packet_is_refused_by_its_version() -> None:
    with pytest.raises(unibus.PacketVersionError, match="v1"):
        unibus.decode_packet(V["room"]["id"], bytes.fromhex(V["oldVersionPacketHex"]))


def test_identity_files_round_trip_at_0600_and_are_refused_when_others_can_read(tmp_path: Path) -> None:
    path = tmp_path / "ada.id"
    ada = unibus.generate_identity("ada")
    unibus.save_identity(str(path), ada)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = unibus.load_identity(str(path))
    assert (back.sign_pub_hex, back.kex_pub_hex, back.handle) == (ada.sign_pub_hex, ada.kex_pub_hex, "ada")
    assert "sign_seed" not in repr(back) and back.sign_seed.hex() not in repr(back)
    with pytest.raises(unibus.IdentityError, match="exists"):
        unibus.save_identity(str(path), unibus.generate_identity())
    os.chmod(path, 0o644)
    with pytest.raises(unibus.IdentityError, match="readable by others"):
        unibus.load_identity(str(path))
    with pytest.raises(unibus.IdentityError, match="no identity file"):
        unibus.load_identity(str(tmp_path / "absent.id"))


def test_the_member_entry_and_change_body_types_build_a_v2_add() -> None:
    alice, bob, carol = IDS["alice"], IDS["bob"], IDS["carol"]
    room = V["room"]["id"]
    create = unibus.sign_change(
        ChangeBody(room, 0, "0" * 64, "create", 0, alice.sign_pub_hex, 1, subject="py.room",
                   policy=("encrypt", "sign"), member=alice.sign_pub_hex, kex=alice.kex_pub_hex,
                   kex_sig=alice.kex_sig_hex, role="admin"),
        alice,
    )
    add = unibus.sign_change(
        ChangeBody(room, 1, unibus.change_hash(create), "add", 1, alice.sign_pub_hex, 2,
                   adds=[MemberEntry(m.sign_pub_hex, m.kex_pub_hex, m.kex_sig_hex, "member") for m in (carol, bob)]),
        alice,
    )
    assert add.text.startswith("unibus/membership/v2\n")
    state = unibus.verify_log(room, [create, add])
    assert sorted(state.members) == sorted(i.sign_pub_hex for i in (alice, bob, carol))
