"""Membership logs (docs/protocol.md §2.4): the strict text of a change, its
signature and hash, and the verification of a whole log into the member set
of every epoch."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from .identity import Identity, verify_kex_binding

HEADER = "unibus/membership/v1"
HEADER_BULK = "unibus/membership/v2"
MAX_CHANGE_MEMBERS = 128
ZERO_HASH = "0" * 64
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX128 = re.compile(r"^[0-9a-f]{128}$")
_INT = re.compile(r"^(0|[1-9][0-9]{0,15})$")
_LINE = re.compile(r"^([a-z-]+): (.*)$")


class MembershipError(Exception):
    """A change or log that does not verify; the message says which change and why."""


@dataclass(frozen=True)
class MemberEntry:
    member: str
    kex: str
    kex_sig: str
    role: str


@dataclass(frozen=True)
class SignedChange:
    """A change as it travels: its text and the standard base64 of its signature."""

    text: str
    sig: str


@dataclass
class ChangeBody:
    room: str
    seq: int
    prev: str
    op: str
    epoch: int
    by: str
    at: int
    subject: str | None = None
    policy: tuple[str, ...] | None = None  # enabled flags, in encrypt,sign,persist order
    member: str | None = None
    kex: str | None = None
    kex_sig: str | None = None
    role: str | None = None
    adds: list[MemberEntry] | None = None


@dataclass
class RoomState:
    room_id: str
    subject: str
    policy: tuple[str, ...]
    epoch: int
    members: dict[str, MemberEntry]
    epochs: dict[int, dict[str, MemberEntry]] = field(default_factory=dict)
    head: str = ZERO_HASH
    seq: int = 0


def subject_violation(subject: str) -> str | None:
    """Why ``subject`` is not a room subject, or None (the server's grammar)."""
    if not subject:
        return "must not be empty"
    if len(subject) > 255:
        return "must be at most 255 characters"
    if any(not (0x21 <= ord(c) <= 0x7E) for c in subject):
        return "only printable ASCII (0x21-0x7E) is allowed"
    if any(t == "" for t in subject.split(".")):
        return "tokens between dots must not be empty"
    if "*" in subject or ">" in subject:
        return "wildcards ('*', '>') are not allowed"
    if subject[0] in "$_":
        return f"subjects starting with '{subject[0]}' are reserved"
    return None


def change_text(b: ChangeBody) -> str:
    """The exact text of a change body (v2 when it names further members)."""
    bulk = b.adds is not None
    lines = [HEADER_BULK if bulk else HEADER, f"room: {b.room}", f"seq: {b.seq}", f"prev: {b.prev}", f"op: {b.op}"]
    if b.op == "create":
        lines += [f"subject: {b.subject}", f"policy: {','.join(b.policy or ()) or 'none'}"]
    if not (bulk and b.op == "add"):
        lines.append(f"member: {b.member}")
        if b.op != "remove":
            lines += [f"kex: {b.kex}", f"kex-sig: {b.kex_sig}", f"role: {b.role}"]
    for a in b.adds or []:
        lines.append(f"add: {a.member} {a.kex} {a.kex_sig} {a.role}")
    lines += [f"epoch: {b.epoch}", f"by: {b.by}", f"at: {b.at}"]
    if any("\n" in line or "\r" in line for line in lines):
        raise MembershipError("a change field contains a line break")
    return "\n".join(lines) + "\n"


def change_hash(change: SignedChange) -> str:
    """The SHA-256 (hex) of a change's text: the next change's ``prev``."""
    return hashlib.sha256(change.text.encode()).hexdigest()


def sign_change(body: ChangeBody, signer: Identity) -> SignedChange:
    """Signs ``body`` (further members sorted into canonical order)."""
    if signer.sign_pub_hex != body.by:
        raise MembershipError("`by` must be the signer")
    if body.adds:
        body.adds = sorted(body.adds, key=lambda a: a.member)
    elif body.adds is not None:
        body.adds = None
    text = change_text(body)
    return SignedChange(text, base64.b64encode(signer.sign(text.encode())).decode())


def _parse_add(value: str) -> MemberEntry:
    parts = value.split(" ")
    if len(parts) != 4 or not _HEX64.match(parts[0]) or not _HEX64.match(parts[1]) or not _HEX128.match(
        parts[2]
    ) or parts[3] not in ("admin", "member"):
        raise MembershipError(f'malformed add line "{value}"')
    return MemberEntry(*parts)


def parse_change(text: str) -> ChangeBody:
    """Parses a change strictly: the text must be exactly what ``change_text`` gives back."""
    lines = text.split("\n")
    if lines.pop() != "" or lines[0] not in (HEADER, HEADER_BULK):
        raise MembershipError("not a membership change")
    bulk = lines[0] == HEADER_BULK
    fields: dict[str, str] = {}
    adds: list[MemberEntry] = []
    for line in lines[1:]:
        m = _LINE.match(line)
        if not m:
            raise MembershipError(f'malformed line "{line}"')
        if m[1] == "add" and bulk:
            if len(adds) >= MAX_CHANGE_MEMBERS:
                raise MembershipError(f"a change names at most {MAX_CHANGE_MEMBERS} members")
            adds.append(_parse_add(m[2]))
            continue
        if m[1] in fields:
            raise MembershipError(f'malformed line "{line}"')
        fields[m[1]] = m[2]

    def get(k: str) -> str:
        if k not in fields:
            raise MembershipError(f"missing field {k}")
        return fields[k]

    def num(k: str) -> int:
        v = get(k)
        if not _INT.match(v):
            raise MembershipError(f"{k} is not a number")
        return int(v)

    op = get("op")
    if op not in ("create", "add", "remove"):
        raise MembershipError(f"unknown op {op}")
    body = ChangeBody(get("room"), num("seq"), get("prev"), op, num("epoch"), get("by"), num("at"))
    if bulk:
        if op == "remove":
            raise MembershipError("a v2 change cannot remove")
        least = 1 if op == "create" else 2
        if len(adds) < least:
            raise MembershipError(f"a v2 {op} change names at least {least} added members")
        if len(adds) + (1 if op == "create" else 0) > MAX_CHANGE_MEMBERS:
            raise MembershipError(f"a change names at most {MAX_CHANGE_MEMBERS} members")
        if any(not (adds[i - 1].member < adds[i].member) for i in range(1, len(adds))):
            raise MembershipError("added members must be in ascending order, each once")
        body.adds = adds
    if not (bulk and op == "add"):
        body.member = get("member")
    if op == "create":
        body.subject = get("subject")
        bad = subject_violation(body.subject)
        if bad:
            raise MembershipError(f"subject: {bad}")
        p = get("policy")
        flags = [] if p == "none" else p.split(",")
        if not all(f in ("encrypt", "sign", "persist") for f in flags):
            raise MembershipError(f"unknown policy {p}")
        body.policy = tuple(f for f in ("encrypt", "sign", "persist") if f in flags)
    if op != "remove" and body.member is not None:
        body.kex, body.kex_sig, body.role = get("kex"), get("kex-sig"), get("role")
        if body.role not in ("admin", "member"):
            raise MembershipError(f"unknown role {body.role}")
    if not re.match(r"^[0-9a-f]{32}$", body.room):
        raise MembershipError("room is not 32 lowercase hex")
    for k, v in (("prev", body.prev), ("by", body.by), ("member", body.member)):
        if v is not None and not _HEX64.match(v):
            raise MembershipError(f"{k} is not 64 lowercase hex")
    if body.kex is not None and not _HEX64.match(body.kex):
        raise MembershipError("kex is not hex")
    if body.kex_sig is not None and not _HEX128.match(body.kex_sig):
        raise MembershipError("kex-sig is not hex")
    if change_text(body) != text:
        raise MembershipError("change text is not canonical")
    return body


def added_members(b: ChangeBody) -> list[MemberEntry]:
    """Every member a change adds: a create's creator first, then the further ones."""
    if b.op == "remove":
        return []
    first = [] if b.member is None else [MemberEntry(b.member, b.kex or "", b.kex_sig or "", b.role or "")]
    return first + list(b.adds or [])


def _verify_one(change: SignedChange) -> ChangeBody:
    body = parse_change(change.text)
    try:
        sig = base64.b64decode(change.sig, validate=True)
    except (binascii.Error, ValueError):
        raise MembershipError(f"change {body.seq}: signature is not base64") from None
    try:
        VerifyKey(bytes.fromhex(body.by)).verify(change.text.encode(), sig)
    except (BadSignatureError, ValueError):
        raise MembershipError(f"change {body.seq}: signature by {body.by} does not verify") from None
    for m in added_members(body):
        if not verify_kex_binding(m.member, m.kex, m.kex_sig):
            raise MembershipError(f"change {body.seq}: {m.member}'s key-exchange key is not bound to its signing key")
    return body


def _apply(prev: RoomState | None, b: ChangeBody, change: SignedChange) -> RoomState:
    h = change_hash(change)
    if prev is None:
        if b.op != "create" or b.seq != 0 or b.prev != ZERO_HASH or b.epoch != 0:
            raise MembershipError("the first change must create the room at seq 0, epoch 0")
        if b.by != b.member or b.role != "admin":
            raise MembershipError("the creator must add itself as the first admin")
        policy = b.policy or ()
        if "encrypt" in policy and "sign" not in policy:
            raise MembershipError("an encrypted room is always signed")
        members = {b.member: MemberEntry(b.member, b.kex or "", b.kex_sig or "", "admin")}
        for a in b.adds or []:
            if a.member in members:
                raise MembershipError("change 0: the creator is added twice")
            members[a.member] = a
        return RoomState(b.room, b.subject or "", policy, 0, members, {0: members}, h, 0)
    if b.op == "create":
        raise MembershipError(f"change {b.seq}: a room is created once")
    if b.seq != prev.seq + 1 or b.prev != prev.head:
        raise MembershipError(f"change {b.seq}: does not follow change {prev.seq}")
    if b.epoch != prev.epoch + 1:
        raise MembershipError(f"change {b.seq}: wrong epoch")
    # Leaving needs no one's consent: a member may sign its own removal.
    leaving = b.op == "remove" and b.by == b.member and b.member in prev.members
    if not leaving and (prev.members.get(b.by) is None or prev.members[b.by].role != "admin"):
        raise MembershipError(f"change {b.seq}: {b.by} is not an admin of the room")
    members = dict(prev.members)
    if b.op == "add":
        for a in added_members(b):
            if a.member in members:
                raise MembershipError(f"change {b.seq}: {a.member} is already a member")
            members[a.member] = a
    else:
        if b.member not in members:
            raise MembershipError(f"change {b.seq}: not a member")
        del members[b.member]
        if not any(m.role == "admin" for m in members.values()):
            raise MembershipError(f"change {b.seq}: would remove the last admin")
    epochs = dict(prev.epochs)
    epochs[b.epoch] = members
    return RoomState(prev.room_id, prev.subject, prev.policy, b.epoch, members, epochs, h, b.seq)


def verify_log(room_id: str, changes: list[SignedChange]) -> RoomState:
    """Verifies a whole log (every rule of §2.4) and returns the state it proves."""
    if not changes:
        raise MembershipError("empty membership log")
    state: RoomState | None = None
    for change in changes:
        body = _verify_one(change)
        if body.room != room_id:
            raise MembershipError(f"change {body.seq} is for another room")
        state = _apply(state, body, change)
    assert state is not None
    return state
