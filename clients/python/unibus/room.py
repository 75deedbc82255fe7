"""One room as a member holds it (docs/protocol.md §2.3–§2.9): its verified
membership log, the room keys sealed to this member, sealing packets in its
own session, and the receive rules for other members' packets."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass

from . import e2e
from .identity import Identity
from .membership import RoomState, SignedChange, verify_log

#: A live packet signed this long before the receiver started listening is a replay (rule 4).
CLOCK_LAG_MS = 2000
#: A send time this far ahead of the receiver's clock is refused the same way.
FUTURE_MS = 30_000
#: Receiving sessions kept per sender, and in all; one pushed out is
#: remembered as closed (at most MAX_RETIRED), so its old packets stay refused.
MAX_SESSIONS_PER_SENDER = 64
MAX_SESSIONS = 4096
MAX_RETIRED = 65_536


class Dropped(Exception):
    """A packet the receive rules refuse; ``reason`` is the counter it goes to (§2.9)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Message:
    room: str
    subject: str
    sender: str
    epoch: int
    session: str
    index: int
    sent_at: int | None
    data: bytes

    @property
    def text(self) -> str | None:
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            return None


class Room:
    """A room this identity is a member of, from the node's ``RoomView`` and
    ``GET /v1/rooms/:id/keys`` answer; nothing from the node is trusted that
    the log's signatures do not prove."""

    def __init__(self, me: Identity, view: dict, sealed_keys: list[dict]) -> None:
        self.me = me
        self.id: str = view["id"]
        changes = [SignedChange(c["text"], c["sig"]) for c in view["changes"]]
        self.state: RoomState = verify_log(self.id, changes)
        self.subject = self.state.subject
        self.encrypted = "encrypt" in self.state.policy
        self.keys: dict[int, bytes] = {}
        for k in sealed_keys:
            epoch, admin = int(k["epoch"]), k["sealedBy"]
            members = self.state.epochs.get(epoch, {})
            # A key counts only when an admin of that epoch sealed it.
            if admin not in members or members[admin].role != "admin":
                continue
            envelope = base64.b64decode(k["sealed"])
            self.keys[epoch] = e2e.open_room_key(self.id, epoch, envelope, me, bytes.fromhex(admin))
        self._session = os.urandom(16)
        self._lane: tuple[int, e2e.Chain | None, int, int] | None = None  # epoch, chain, packet, frame
        # (epoch, sender, session) -> chain, next packet index, next frame index;
        # insertion order is age, for evicting the oldest.
        self._chains: dict[tuple[int, str, str], tuple[e2e.Chain | None, int, int]] = {}
        self._retired: dict[tuple[int, str, str], None] = {}
        self._horizon = int(time.time() * 1000) - CLOCK_LAG_MS

    def seal(self, data: bytes | str) -> bytes:
        """One timed packet of one frame in this member's session, current epoch."""
        epoch = self.state.epoch
        if self.me.sign_pub_hex not in self.state.members:
            raise PermissionError(f"not a member of room {self.id}")
        if self._lane is None or self._lane[0] != epoch:
            chain = None
            if self.encrypted:
                if epoch not in self.keys:
                    raise KeyError(f"no room key for epoch {epoch}")
                chain = e2e.Chain(e2e.initial_chain_key(self.keys[epoch], self.id, epoch, self.me.sign_pub, self._session))
            self._lane = (epoch, chain, 0, 0)
        _, chain, index, frame = self._lane
        packet = e2e.encode_packet(
            room_id=self.id, epoch=epoch, session=self._session, signer=self.me, encrypted=self.encrypted,
            index=index, first_frame=frame, frames=[data.encode() if isinstance(data, str) else data],
            key=chain.next() if chain else None, sent_at=int(time.time() * 1000),
        )
        self._lane = (epoch, chain, index + 1, frame + 1)
        return packet

    def open(self, data: bytes) -> list[Message]:
        """A live packet's frames, after rules 1–6 of §2.9; raises :class:`Dropped`."""
        try:
            p = e2e.decode_packet(self.id, data)
        except e2e.PacketVersionError as err:
            raise Dropped("version", str(err)) from None
        except e2e.PacketError as err:
            raise Dropped("invalid", str(err)) from None
        if p.encrypted != self.encrypted:
            raise Dropped("invalid", "packet encryption does not match the room policy")
        sender = p.sender.hex()
        if p.epoch not in self.state.epochs:
            raise Dropped("invalid", f"unknown epoch {p.epoch}")
        if sender not in self.state.epochs[p.epoch]:
            raise Dropped("nonMember", f"{sender} is not a member of epoch {p.epoch}")
        if sender not in self.state.members:
            raise Dropped("nonMember", f"{sender} is no longer a member")
        now = int(time.time() * 1000)
        if p.sent_at is None or p.sent_at < self._horizon or p.sent_at > now + FUTURE_MS:
            raise Dropped("replayed", "not timed within this receiver's window")
        lane = (p.epoch, sender, p.session.hex())
        if lane in self._retired:
            raise Dropped("replayed", "sender session was retired")
        if lane not in self._chains:
            self._track(lane)
        chain, next_index, next_frame = self._chains[lane]
        if p.index < next_index:
            raise Dropped("replayed", f"packet {p.index} of a session already past it")
        if p.first_frame < next_frame:
            raise Dropped("invalid", "frame index went backwards")
        key = None
        if self.encrypted:
            if p.epoch not in self.keys:
                raise Dropped("noKey", f"no room key for epoch {p.epoch}")
            if chain is None:
                chain = e2e.Chain(e2e.initial_chain_key(self.keys[p.epoch], self.id, p.epoch, p.sender, p.session))
            try:
                key = chain.key_for(p.index)
            except e2e.PacketError as err:
                raise Dropped("invalid", str(err)) from None
        # The index is spent whether or not the body opens: its signer can only waste its own session.
        self._chains[lane] = (chain, p.index + 1, p.first_frame + p.count)
        try:
            frames = e2e.open_packet(self.id, p, key)
        except e2e.PacketError as err:
            raise Dropped("invalid", str(err)) from None
        return [
            Message(self.id, self.subject, sender, p.epoch, p.session.hex(), p.first_frame + i, p.sent_at, f)
            for i, f in enumerate(frames)
        ]

    def _track(self, lane: tuple[int, str, str]) -> None:
        """A new receiving session, within the bounds: a sender's own oldest
        is pushed out past its quota (never someone else's), the oldest of all
        past the total."""
        mine = [k for k in self._chains if k[1] == lane[1]]
        if len(mine) >= MAX_SESSIONS_PER_SENDER:
            self._retire(mine[0])
        if len(self._chains) >= MAX_SESSIONS:
            self._retire(next(iter(self._chains)))
        self._chains[lane] = (None, 0, 0)

    def _retire(self, lane: tuple[int, str, str]) -> None:
        # Restarting a pushed-out session at CK_0 would accept its old packets again.
        del self._chains[lane]
        self._retired[lane] = None
        if len(self._retired) > MAX_RETIRED:
            del self._retired[next(iter(self._retired))]
