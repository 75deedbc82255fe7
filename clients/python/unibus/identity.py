"""Identities: an Ed25519 signing key, an X25519 key-exchange key, and the
signature that binds the second to the first (docs/protocol.md §2.2).

Identity files are the JSON that ``unibus identity new`` writes (mode 0600)::

    {"version": 1, "handle": "ada", "sign_pub": …, "sign_seed": …,
     "kex_pub": …, "kex_priv": …, "kex_sig": …}
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.public import PrivateKey
from nacl.signing import SigningKey, VerifyKey

IDENTITY_FILE_VERSION = 1
KEX_BINDING_CONTEXT = "unibus/kex-binding/v1\n"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MAX_FILE_BYTES = 64 * 1024


class IdentityError(Exception):
    """An identity file that cannot be used; the message never quotes secrets."""


def kex_binding_message(sign_pub_hex: str, kex_pub_hex: str) -> bytes:
    """The bytes a kex binding signature covers.

    >>> kex_binding_message("3d" * 32, "de" * 32)[:22]
    b'unibus/kex-binding/v1\\n'
    """
    if not _HEX64.match(sign_pub_hex) or not _HEX64.match(kex_pub_hex):
        raise ValueError("kex binding keys must be 64 lowercase hex characters each")
    return f"{KEX_BINDING_CONTEXT}{sign_pub_hex}\n{kex_pub_hex}".encode()


def verify_kex_binding(sign_pub_hex: str, kex_pub_hex: str, kex_sig_hex: str) -> bool:
    """Whether ``kex_sig_hex`` is ``sign_pub_hex``'s signature binding ``kex_pub_hex``."""
    try:
        VerifyKey(bytes.fromhex(sign_pub_hex)).verify(
            kex_binding_message(sign_pub_hex, kex_pub_hex), bytes.fromhex(kex_sig_hex)
        )
        return True
    except (BadSignatureError, ValueError):
        return False


@dataclass(frozen=True, repr=False)
class Identity:
    """A unibus identity. ``repr`` shows public parts only."""

    sign_seed: bytes
    kex_priv: bytes
    handle: str | None = None

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(self.sign_seed)

    @property
    def sign_pub(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def sign_pub_hex(self) -> str:
        return self.sign_pub.hex()

    @property
    def kex_pub(self) -> bytes:
        return bytes(PrivateKey(self.kex_priv).public_key)

    @property
    def kex_pub_hex(self) -> str:
        return self.kex_pub.hex()

    @property
    def kex_sig_hex(self) -> str:
        """The kex binding signature (Ed25519 is deterministic: always the same)."""
        msg = kex_binding_message(self.sign_pub_hex, self.kex_pub_hex)
        return self.signing_key.sign(msg).signature.hex()

    def sign(self, message: bytes) -> bytes:
        """A detached Ed25519 signature of ``message``."""
        return self.signing_key.sign(message).signature

    def __repr__(self) -> str:
        return f"Identity(handle={self.handle!r}, sign_pub={self.sign_pub_hex})"


def generate_identity(handle: str | None = None) -> Identity:
    """A new identity from fresh random keys."""
    return Identity(bytes(SigningKey.generate()), bytes(PrivateKey.generate()), handle)


def encode_identity_file(identity: Identity) -> str:
    """The identity file text, as ``unibus identity new`` writes it."""
    data: dict[str, object] = {"version": IDENTITY_FILE_VERSION}
    if identity.handle is not None:
        data["handle"] = identity.handle
    data.update(
        sign_pub=identity.sign_pub_hex,
        sign_seed=identity.sign_seed.hex(),
        kex_pub=identity.kex_pub_hex,
        kex_priv=identity.kex_priv.hex(),
        kex_sig=identity.kex_sig_hex,
    )
    return json.dumps(data, indent=2) + "\n"


def decode_identity_file(text: str, path: str = "<memory>") -> Identity:
    """Parses and fully checks identity file text (public keys and binding must match)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise IdentityError(f"{path}: not JSON") from None
    if not isinstance(data, dict) or data.get("version") != IDENTITY_FILE_VERSION:
        raise IdentityError(f"{path}: not a version {IDENTITY_FILE_VERSION} identity file")
    fields = ("sign_pub", "sign_seed", "kex_pub", "kex_priv")
    if not all(isinstance(data.get(k), str) and _HEX64.match(data[k]) for k in fields):
        raise IdentityError(f"{path}: a key is missing or not 64 lowercase hex characters")
    handle = data.get("handle")
    if handle is not None and not isinstance(handle, str):
        raise IdentityError(f"{path}: handle is not a string")
    identity = Identity(bytes.fromhex(data["sign_seed"]), bytes.fromhex(data["kex_priv"]), handle)
    if identity.sign_pub_hex != data["sign_pub"] or identity.kex_pub_hex != data["kex_pub"]:
        raise IdentityError(f"{path}: the public keys do not match the private ones")
    if data.get("kex_sig") != identity.kex_sig_hex:
        raise IdentityError(f"{path}: the kex binding signature does not match")
    return identity


def load_identity(path: str) -> Identity:
    """Loads an identity file, refusing one that others may read (mode 0600 expected)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise IdentityError(f"no identity file at {path}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise IdentityError(f"identity path {path} is not a regular file")
        if st.st_mode & 0o077:
            raise IdentityError(f"{path} is readable by others (mode {st.st_mode & 0o777:o}): chmod 600")
        raw = f.read(_MAX_FILE_BYTES + 1)
    if len(raw) > _MAX_FILE_BYTES:
        raise IdentityError(f"{path}: file is too large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise IdentityError(f"{path}: not UTF-8 text") from None
    return decode_identity_file(text, path)


def save_identity(path: str, identity: Identity, overwrite: bool = False) -> None:
    """Writes ``identity`` to ``path`` with mode 0600 (whole, then moved into place)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.urandom(8).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(encode_identity_file(identity))
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic "create if absent"
            except FileExistsError:
                raise IdentityError(f"{path} exists; not overwritten") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
