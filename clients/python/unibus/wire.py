"""The two text spellings a client needs besides the room formats: the signed
control-plane request (docs/protocol.md §1) and the nkey spelling of a key
(§3.1), as the protocol defines them."""

from __future__ import annotations

import base64
import hashlib
import os
import time

from .identity import Identity

REQUEST_CONTEXT = "unibus-request-v1"
_USER_PREFIX = 0xA0  # 20 << 3: base32 index 20 is 'U'
_SEED_PREFIX = bytes([0x90 | (_USER_PREFIX >> 5), (_USER_PREFIX & 31) << 3])


def crc16_xmodem(data: bytes) -> int:
    """CRC-16/XMODEM: poly 0x1021, init 0, no reflection, no final XOR."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _nkey(raw: bytes) -> str:
    crc = crc16_xmodem(raw)
    return base64.b32encode(raw + bytes([crc & 0xFF, crc >> 8])).decode().rstrip("=")


def user_nkey(sign_pub: bytes) -> str:
    """The public ``U…`` nkey of a user's Ed25519 key (56 characters)."""
    if len(sign_pub) != 32:
        raise ValueError("a public key is 32 bytes")
    return _nkey(bytes([_USER_PREFIX]) + sign_pub)


def seed_nkey(sign_seed: bytes) -> str:
    """The ``SU…`` seed string of a user's Ed25519 seed (58 characters), for NATS tools."""
    if len(sign_seed) != 32:
        raise ValueError("a seed is 32 bytes")
    return _nkey(_SEED_PREFIX + sign_seed)


def canonical_request(method: str, path_and_query: str, timestamp: int, nonce: str, body: bytes) -> str:
    """The six lines a control-plane request signature covers (no trailing newline)."""
    body_hash = hashlib.sha256(body).hexdigest()
    return "\n".join([REQUEST_CONTEXT, method.upper(), path_and_query, str(timestamp), nonce, body_hash])


def sign_request(
    identity: Identity,
    method: str,
    path_and_query: str,
    body: bytes = b"",
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four ``x-unibus-*`` headers of a signed request (``timestamp`` and
    ``nonce`` fixed only for test vectors)."""
    ts = int(time.time() * 1000) if timestamp is None else timestamp
    n = nonce if nonce is not None else base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    sig = identity.sign(canonical_request(method, path_and_query, ts, n, body).encode())
    return {
        "x-unibus-key": identity.sign_pub_hex,
        "x-unibus-timestamp": str(ts),
        "x-unibus-nonce": n,
        "x-unibus-signature": base64.urlsafe_b64encode(sig).decode().rstrip("="),
    }
