"""A blob's encryption: each blob has its own random key, which travels only
end-to-end encrypted inside a room message; the ciphertext is bound to the
room, so a blob cannot be passed off as another room's (the same format as
lib/client/blobs.ts)."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

from nacl.bindings import crypto_aead_chacha20poly1305_ietf_decrypt, crypto_aead_chacha20poly1305_ietf_encrypt
from nacl.exceptions import CryptoError

from .e2e import lp
from .errors import MembershipVerificationError

NONCE_BYTES = 12


@dataclass(frozen=True)
class BlobRef:
    """A stored blob: its id, its own key (base64; send it only inside an
    encrypted room) and its plaintext size. ``as_dict()`` is the JSON shape
    the TypeScript client uses (``{"id", "key", "size"}``)."""

    id: str
    key: str
    size: int

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "key": self.key, "size": self.size}

    @staticmethod
    def from_dict(d: dict) -> BlobRef:
        return BlobRef(str(d["id"]), str(d["key"]), int(d["size"]))


def _aad(room_id: str) -> bytes:
    return b"unibus/blob/v1" + lp(room_id)


def seal_blob(room_id: str, data: bytes) -> tuple[bytes, str]:
    """``data`` sealed under a fresh key for ``room_id``: the ciphertext to
    store and the key (base64) to share.

    >>> sealed, key = seal_blob("00" * 16, b"report")
    >>> open_blob("00" * 16, key, sealed, "b1")
    b'report'
    """
    key, nonce = os.urandom(32), os.urandom(NONCE_BYTES)
    sealed = nonce + crypto_aead_chacha20poly1305_ietf_encrypt(data, _aad(room_id), nonce, key)
    return sealed, base64.b64encode(key).decode()


def open_blob(room_id: str, key: str, sealed: bytes, blob_id: str = "") -> bytes:
    """The plaintext of a stored blob; raises if it was altered or is another room's."""
    try:
        return crypto_aead_chacha20poly1305_ietf_decrypt(
            sealed[NONCE_BYTES:], _aad(room_id), sealed[:NONCE_BYTES], base64.b64decode(key)
        )
    except (CryptoError, ValueError):
        raise MembershipVerificationError(f"blob {blob_id} does not decrypt: altered or not this room's") from None
