"""The end-to-end formats of a room (docs/protocol.md §2.5–§2.9): sealed room
keys, the per-sender ratchet, packets of frames, and replies. PyNaCl
(libsodium) for every primitive; HKDF is HMAC-SHA-256 from the standard
library, as RFC 5869 spells it."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_decrypt,
    crypto_aead_chacha20poly1305_ietf_encrypt,
    crypto_box,
    crypto_scalarmult_base,
)
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.encoding import RawEncoder
from nacl.hash import blake2b
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.signing import VerifyKey

from .identity import Identity

PACKET_MAGIC = b"UBP2"
HEADER_BYTES = 80
TIME_BYTES = 8
SIG_BYTES = 64
TAG_BYTES = 16
MAX_FRAMES = 1024
FLAG_ENCRYPTED = 1
FLAG_TIMED = 2
ZERO_SALT = bytes(32)


class PacketError(Exception):
    """A packet that is malformed, truncated, or not signed by its sender."""


class PacketVersionError(PacketError):
    """A packet of another protocol version (``UBP`` and a digit other than 2)."""


class RoomKeyError(Exception):
    """A sealed room key that does not open or is not signed by the admin it names."""


def lp(s: str) -> bytes:
    """``u16(len) || utf8(s)``."""
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-SHA-256."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block = b"", b""
    for i in range((length + 31) // 32):
        block = hmac.new(prk, block + info + bytes([i + 1]), hashlib.sha256).digest()
        out += block
    return out[:length]


# ---- the ratchet (§2.6) ----


def initial_chain_key(room_key: bytes, room_id: str, epoch: int, sender: bytes, session: bytes) -> bytes:
    """``CK_0`` of one sender session in one epoch."""
    info = b"unibus/chain/v2" + lp(room_id) + u32(epoch) + sender + session
    return hkdf_sha256(room_key, ZERO_SALT, info, 32)


#: How many packets a receiver skips over lost ones before refusing: each
#: skipped index costs one HKDF step, so a member could otherwise make a
#: receiver spin through billions of them with one packet.
MAX_SKIP = 2048


class Chain:
    """The per-sender ratchet: ``MK_n`` for packet ``n``, never going back."""

    def __init__(self, ck0: bytes, max_skip: int = MAX_SKIP) -> None:
        self._ck = ck0
        self._index = 0
        self._max_skip = max_skip

    def next(self) -> bytes:
        okm = hkdf_sha256(self._ck, ZERO_SALT, b"unibus/step/v2", 64)
        self._ck = okm[32:]
        self._index += 1
        return okm[:32]

    def key_for(self, index: int) -> bytes:
        """``MK_index`` (``index`` not below the next one): the keys between are spent."""
        if index < self._index:
            raise PacketError(f"packet {index} is behind the chain")
        if index - self._index > self._max_skip:
            raise PacketError(f"packet {index} skips too far ahead")
        while self._index < index:
            self.next()
        return self.next()


# ---- sealed room keys (§2.5) ----


def _seal(plaintext: bytes, recipient_kex_pub: bytes, ephemeral_secret: bytes | None) -> bytes:
    if ephemeral_secret is None:
        return bytes(SealedBox(PublicKey(recipient_kex_pub)).encrypt(plaintext))
    # crypto_box_seal spelled out, so that a test vector's fixed ephemeral
    # key gives its bytes: epk || box(plaintext, BLAKE2b(epk || pk)).
    epk = crypto_scalarmult_base(ephemeral_secret)
    nonce = blake2b(epk + recipient_kex_pub, digest_size=24, encoder=RawEncoder)
    return epk + crypto_box(plaintext, nonce, recipient_kex_pub, ephemeral_secret)


def room_key_signed_message(room_id: str, epoch: int, member_sign_pub: bytes, sealed: bytes) -> bytes:
    return b"unibus/room-key/v1" + lp(room_id) + u32(epoch) + member_sign_pub + sealed


def seal_room_key(
    room_id: str,
    epoch: int,
    room_key: bytes,
    member_sign_pub: bytes,
    member_kex_pub: bytes,
    admin: Identity,
    ephemeral_secret: bytes | None = None,
) -> bytes:
    """The envelope ``sealed || signature`` of ``room_key`` for one member
    (``ephemeral_secret`` only for test vectors; random otherwise)."""
    sealed = _seal(lp(room_id) + u32(epoch) + room_key, member_kex_pub, ephemeral_secret)
    return sealed + admin.sign(room_key_signed_message(room_id, epoch, member_sign_pub, sealed))


def open_room_key(room_id: str, epoch: int, envelope: bytes, me: Identity, admin_sign_pub: bytes) -> bytes:
    """The room key an admin sealed to ``me`` for ``epoch``."""
    if len(envelope) <= SIG_BYTES:
        raise RoomKeyError("envelope too short")
    sealed, sig = envelope[:-SIG_BYTES], envelope[-SIG_BYTES:]
    try:
        VerifyKey(admin_sign_pub).verify(room_key_signed_message(room_id, epoch, me.sign_pub, sealed), sig)
        plain = SealedBox(PrivateKey(me.kex_priv)).decrypt(sealed)
    except (BadSignatureError, CryptoError, ValueError) as err:
        raise RoomKeyError(f"room key of epoch {epoch} does not open: {err}") from None
    want = lp(room_id) + u32(epoch)
    if len(plain) != len(want) + 32 or not plain.startswith(want):
        raise RoomKeyError("room key envelope is for another room or epoch")
    return plain[len(want) :]


# ---- packets (§2.7–§2.9) ----


@dataclass(frozen=True)
class Packet:
    """A parsed packet whose signature has been checked; the body is still sealed."""

    encrypted: bool
    sender: bytes
    epoch: int
    session: bytes
    index: int
    first_frame: int
    count: int
    nonce: bytes
    sent_at: int | None
    header: bytes
    body: bytes


def body_aad(room_id: str, header: bytes) -> bytes:
    return b"unibus/body/v2" + lp(room_id) + header


def packet_signed_message(room_id: str, unsigned: bytes) -> bytes:
    return b"unibus/packet/v2" + lp(room_id) + hashlib.sha256(unsigned).digest()


def encode_packet(
    *,
    room_id: str,
    epoch: int,
    session: bytes,
    signer: Identity,
    encrypted: bool,
    index: int,
    first_frame: int,
    frames: list[bytes],
    key: bytes | None = None,
    sent_at: int | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """One signed packet of ``frames`` (``nonce`` only for test vectors; random otherwise)."""
    if not 1 <= len(frames) <= MAX_FRAMES:
        raise ValueError(f"a packet carries 1 to {MAX_FRAMES} frames")
    if len(session) != 16:
        raise ValueError("a session id is 16 bytes")
    if encrypted:
        if key is None:
            raise ValueError("an encrypted packet needs its message key")
        nonce = nonce if nonce is not None else os.urandom(12)
    elif nonce is not None:
        raise ValueError("a nonce is for encrypted packets only")
    flags = (FLAG_ENCRYPTED if encrypted else 0) | (FLAG_TIMED if sent_at is not None else 0)
    header = (
        PACKET_MAGIC
        + bytes([flags, 0])
        + struct.pack(">H", len(frames))
        + signer.sign_pub
        + u32(epoch)
        + session
        + u32(index)
        + u32(first_frame)
        + (nonce if encrypted else bytes(12))
    )
    if sent_at is not None:
        header += struct.pack(">Q", sent_at)
    plain = b"".join(u32(len(f)) + f for f in frames)
    body = (
        crypto_aead_chacha20poly1305_ietf_encrypt(plain, body_aad(room_id, header), nonce, key)
        if encrypted
        else plain
    )
    unsigned = header + body
    return unsigned + signer.sign(packet_signed_message(room_id, unsigned))


def decode_packet(room_id: str, data: bytes) -> Packet:
    """Parses a packet and checks its signature (rule 1 of §2.9); membership is the caller's."""
    if len(data) >= 4 and data[:3] == b"UBP" and data[3:4] != b"2" and 0x31 <= data[3] <= 0x39:
        raise PacketVersionError(f"packet format v{data[3] - 0x30} is not supported (this is v2)")
    if len(data) < HEADER_BYTES + 4 + SIG_BYTES:
        raise PacketError("packet too short")
    if data[:4] != PACKET_MAGIC:
        raise PacketError("not a unibus packet")
    flags = data[4]
    if flags & ~(FLAG_ENCRYPTED | FLAG_TIMED) or data[5] != 0:
        raise PacketError("unknown packet flags")
    encrypted = bool(flags & FLAG_ENCRYPTED)
    header_len = HEADER_BYTES + (TIME_BYTES if flags & FLAG_TIMED else 0)
    (count,) = struct.unpack(">H", data[6:8])
    if not 1 <= count <= MAX_FRAMES:
        raise PacketError("frame count out of range")
    end = len(data) - SIG_BYTES
    if end - header_len < 4 * count + (TAG_BYTES if encrypted else 0):
        raise PacketError("packet too short for its frames")
    nonce = data[68:80]
    if not encrypted and nonce != bytes(12):
        raise PacketError("a sign-only packet has a zero nonce")
    sender = data[8:40]
    try:
        VerifyKey(sender).verify(packet_signed_message(room_id, data[:end]), data[end:])
    except (BadSignatureError, ValueError):
        raise PacketError("signature does not verify") from None
    sent_at = struct.unpack(">Q", data[80:88])[0] if flags & FLAG_TIMED else None
    return Packet(
        encrypted=encrypted,
        sender=sender,
        epoch=struct.unpack(">I", data[40:44])[0],
        session=data[44:60],
        index=struct.unpack(">I", data[60:64])[0],
        first_frame=struct.unpack(">I", data[64:68])[0],
        count=count,
        nonce=nonce,
        sent_at=sent_at,
        header=data[:header_len],
        body=data[header_len:end],
    )


def open_packet(room_id: str, packet: Packet, key: bytes | None) -> list[bytes]:
    """The frames of a decoded packet (``key`` = its ``MK_n``, or None when sign-only)."""
    if packet.encrypted:
        if key is None:
            raise PacketError("an encrypted packet needs its message key")
        try:
            plain = crypto_aead_chacha20poly1305_ietf_decrypt(
                packet.body, body_aad(room_id, packet.header), packet.nonce, key
            )
        except CryptoError:
            raise PacketError("body does not decrypt") from None
    else:
        plain = packet.body
    frames, at = [], 0
    for _ in range(packet.count):
        if at + 4 > len(plain):
            raise PacketError("frames do not fill the body")
        (n,) = struct.unpack(">I", plain[at : at + 4])
        if at + 4 + n > len(plain):
            raise PacketError("frames do not fill the body")
        frames.append(plain[at + 4 : at + 4 + n])
        at += 4 + n
    if at != len(plain):
        raise PacketError("frames do not fill the body")
    return frames


def reply_session(requester: bytes, request_session: bytes, epoch: int, frame_index: int) -> bytes:
    """The session of the reply to one request (§2.9): from the request's
    sender, session, epoch and the frame index of its one frame."""
    data = b"unibus/reply/v1" + requester + request_session + u32(epoch) + u32(frame_index)
    return hashlib.sha256(data).digest()[:16]
