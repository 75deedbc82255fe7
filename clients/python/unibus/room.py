"""One room as a member holds it (docs/protocol.md §2.3–§2.10): its verified
membership log, the room keys sealed to this member, sealing packets in its
own session (messages, requests, replies), and the receive rules for other
members' packets, live or from history."""

from __future__ import annotations

import base64
import datetime
import os
import time
from dataclasses import dataclass

from . import e2e
from .errors import MembershipVerificationError, NotAMemberError, RoomKeyUnavailableError
from .identity import Identity
from .membership import MembershipError, RoomState, SignedChange, change_hash, verify_log

#: A live packet signed this long before the receiver started listening is a replay (rule 4).
CLOCK_LAG_MS = 2000
#: A send time this far ahead of the receiver's clock is refused the same way.
FUTURE_MS = 30_000
#: Receiving sessions kept per sender, and in all; one pushed out is
#: remembered as closed (at most MAX_RETIRED), so its old packets stay refused.
MAX_SESSIONS_PER_SENDER = 64
MAX_SESSIONS = 4096
MAX_RETIRED = 65_536
#: How far ahead of the known epoch a current member's packet may be and
#: still make the receiver learn the room again (rule 3); a forged epoch
#: beyond it cannot make receivers hammer the control plane.
MAX_EPOCH_LEAD = 16
#: A history read skips further ahead in one chain than a live receiver may:
#: a long stored session is read from anywhere in it.
MAX_HISTORY_SKIP = 131_072
#: The prefix of a persisted room's wire subject (§2.10).
ROOM_WIRE_PREFIX = "$UNIBUS.ROOM."

DROP_REASONS = ("version", "invalid", "nonMember", "replayed", "noKey")


class Dropped(Exception):
    """A packet the receive rules refuse; ``reason`` is the counter it goes to (§2.9)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class Stale(Exception):
    """A current member's packet of an epoch newer than this room's log:
    learn the room again (:meth:`Room.update`), then open the same bytes again.
    Nothing was consumed from any chain."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"epoch {epoch} is newer than the log")
        self.epoch = epoch


@dataclass(frozen=True)
class Message:
    """One delivered frame: who sent it (verified), in which room, and its bytes.

    ``handle`` is the sender's handle as the control plane lists it (a name
    for display, not verified); ``seq`` the stream sequence when read from
    history; ``reply`` the reply subject of a request (answer it with
    :meth:`unibus.Client.respond`)."""

    room: str
    subject: str
    sender: str
    epoch: int
    session: str
    index: int
    sent_at: int | None
    data: bytes
    handle: str | None = None
    seq: int | None = None
    reply: str | None = None

    @property
    def text(self) -> str | None:
        """The data as text when it is UTF-8, else None."""
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            return None

    @property
    def time(self) -> datetime.datetime | None:
        """The signed send time (UTC), when the packet carried one."""
        if self.sent_at is None:
            return None
        return datetime.datetime.fromtimestamp(self.sent_at / 1000, tz=datetime.timezone.utc)


def wire_subject(room_id: str, subject: str, policy: tuple[str, ...]) -> str:
    """Where a room's packets travel: its subject, or ``$UNIBUS.ROOM.<id>`` when persisted."""
    return ROOM_WIRE_PREFIX + room_id if "persist" in policy else subject


class _Lane:
    """One receiving or sending session's position."""

    __slots__ = ("chain", "last_packet", "next_frame")

    def __init__(self, chain: e2e.Chain | None, last_packet: int = -1, next_frame: int = 0) -> None:
        self.chain = chain
        self.last_packet = last_packet
        self.next_frame = next_frame


class Room:
    """A room this identity is a member of, from the node's ``RoomView`` and
    ``GET /v1/rooms/:id/keys`` answer; nothing from the node is trusted that
    the log's signatures do not prove."""

    def __init__(self, me: Identity, view: dict, sealed_keys: list[dict], *, history: bool = False) -> None:
        self.me = me
        self.id: str = view["id"]
        self.keys: dict[int, bytes] = {}
        self._state: RoomState | None = None
        self._history = history
        self._session = os.urandom(16)
        self._send: tuple[int, e2e.Chain | None, int, int] | None = None  # epoch, chain, packet, frame
        # "epoch/sender/session" -> lane; insertion order is age, for evicting the oldest.
        self._lanes: dict[str, _Lane] = {}
        self._per_sender: dict[str, list[str]] = {}
        self._retired: dict[str, None] = {}
        self._answered: dict[str, None] = {}
        self._horizon = int(time.time() * 1000) - CLOCK_LAG_MS
        self.stats: dict[str, int] = {"delivered": 0, **{r: 0 for r in DROP_REASONS}}
        self._view = view
        self._sealed = sealed_keys
        self.update(view, sealed_keys)

    @property
    def state(self) -> RoomState:
        assert self._state is not None
        return self._state

    @property
    def subject(self) -> str:
        return self.state.subject

    @property
    def policy(self) -> tuple[str, ...]:
        return self.state.policy

    @property
    def encrypted(self) -> bool:
        return "encrypt" in self.state.policy

    @property
    def plain(self) -> bool:
        """Neither signed nor encrypted: the payload is the application's bytes."""
        return "sign" not in self.state.policy and not self.encrypted

    @property
    def wire_subject(self) -> str:
        return wire_subject(self.id, self.state.subject, self.state.policy)

    @property
    def is_member(self) -> bool:
        return self.me.sign_pub_hex in self.state.members

    def update(self, view: dict, sealed_keys: list[dict]) -> None:
        """Takes a fresh view and key list. A member the server lists but the
        log does not prove, a shorter log than one already seen, or another
        history than it is an attack, raised as :class:`MembershipVerificationError`."""
        if view["id"] != self.id:
            raise ValueError("view is for another room")
        changes = [SignedChange(c["text"], c["sig"]) for c in view["changes"]]
        try:
            state = verify_log(self.id, changes)
        except MembershipError as err:
            raise MembershipVerificationError(f"room {self.id}: {err}") from None
        if "subject" in view and view["subject"] != state.subject:
            raise MembershipVerificationError(f"room {self.id}: server reports another subject")
        injected = sorted({m["signPub"] for m in view.get("members", [])} - set(state.members))
        if injected:
            raise MembershipVerificationError(
                f"room {self.id}: the server lists members its signed log does not prove: {', '.join(injected)}"
            )
        # The log only grows: an older prefix would hide a removal.
        seen = self._state
        if seen is not None:
            if state.seq < seen.seq:
                raise MembershipVerificationError(
                    f"room {self.id}: the server served membership up to change {state.seq}, "
                    f"but change {seen.seq} was already seen"
                )
            if change_hash(changes[seen.seq]) != seen.head:
                raise MembershipVerificationError(
                    f"room {self.id}: the server's membership history differs from the one already seen"
                )
        self._state, self._view, self._sealed = state, view, sealed_keys
        for k in sealed_keys:
            epoch, admin = int(k["epoch"]), k["sealedBy"]
            if epoch in self.keys:
                continue
            members = state.epochs.get(epoch, {})
            # A key counts only when an admin (of that epoch, or now) sealed it.
            by_admin = (admin in members and members[admin].role == "admin") or (
                admin in state.members and state.members[admin].role == "admin"
            )
            if not by_admin:
                continue
            try:
                envelope = base64.b64decode(k["sealed"])
                self.keys[epoch] = e2e.open_room_key(self.id, epoch, envelope, self.me, bytes.fromhex(admin))
            except (e2e.RoomKeyError, ValueError):
                continue

    def for_history(self) -> Room:
        """A receiving-only copy for one history read: the same log and keys,
        fresh chains, no freshness rule."""
        copy = Room.__new__(Room)
        copy.__dict__.update(self.__dict__)
        copy.keys = dict(self.keys)
        copy._history = True
        copy._lanes, copy._per_sender, copy._retired, copy._answered = {}, {}, {}, {}
        copy.stats = {"delivered": 0, **{r: 0 for r in DROP_REASONS}}
        return copy

    # ---- sending (§2.8) ----

    def _chain_for(self, epoch: int, session: bytes) -> e2e.Chain | None:
        if not self.encrypted:
            return None
        if epoch not in self.keys:
            raise RoomKeyUnavailableError(f"no key for epoch {epoch} of room {self.id}")
        return e2e.Chain(e2e.initial_chain_key(self.keys[epoch], self.id, epoch, self.me.sign_pub, session))

    def seal_many(self, frames: list[bytes | str]) -> tuple[bytes, int]:
        """One timed packet of ``frames`` in this member's session, current
        epoch; also the frame index of its first frame."""
        epoch = self.state.epoch
        if not self.is_member:
            raise NotAMemberError(f"not a member of room {self.id}")
        if self._send is None or self._send[0] != epoch:
            self._send = (epoch, self._chain_for(epoch, self._session), 0, 0)
        _, chain, index, frame = self._send
        data = [f.encode() if isinstance(f, str) else bytes(f) for f in frames]
        packet = e2e.encode_packet(
            room_id=self.id, epoch=epoch, session=self._session, signer=self.me, encrypted=self.encrypted,
            index=index, first_frame=frame, frames=data, key=chain.next() if chain else None,
            sent_at=int(time.time() * 1000),
        )
        self._send = (epoch, chain, index + 1, frame + len(data))
        return packet, frame

    def seal(self, data: bytes | str) -> bytes:
        """One timed packet of one frame in this member's session, current epoch."""
        return self.seal_many([data])[0]

    def seal_request(self, data: bytes | str) -> tuple[bytes, str]:
        """A request packet and the session (hex) its reply must carry."""
        packet, frame = self.seal_many([data])
        epoch = self.state.epoch
        return packet, e2e.reply_session(self.me.sign_pub, self._session, epoch, frame).hex()

    def seal_reply(self, request: Message, data: bytes | str) -> bytes:
        """The one reply to ``request``, in the current epoch, on the session
        derived from the request (§2.9): packet 0, frame 0."""
        answered = f"{request.epoch}/{request.sender}/{request.session}/{request.index}"
        if answered in self._answered:
            raise ValueError("this request was already answered")
        if not self.is_member:
            raise NotAMemberError(f"not a member of room {self.id}")
        self._answered[answered] = None
        if len(self._answered) > MAX_RETIRED:
            del self._answered[next(iter(self._answered))]
        session = e2e.reply_session(
            bytes.fromhex(request.sender), bytes.fromhex(request.session), request.epoch, request.index
        )
        epoch = self.state.epoch
        chain = self._chain_for(epoch, session)
        return e2e.encode_packet(
            room_id=self.id, epoch=epoch, session=session, signer=self.me, encrypted=self.encrypted,
            index=0, first_frame=0, frames=[data.encode() if isinstance(data, str) else bytes(data)],
            key=chain.next() if chain else None, sent_at=int(time.time() * 1000),
        )

    # ---- receiving (§2.9) ----

    def open(self, data: bytes) -> list[Message]:
        """A packet's frames after rules 1–6 of §2.9; raises :class:`Dropped`
        (counted in ``stats``) or :class:`Stale` (not counted)."""
        return self._accept(data, None)

    def open_reply(self, data: bytes, reply_session: str) -> Message:
        """The reply to a request of ours: a live packet whose session is the
        one derived from the request, packet 0 with one frame 0."""
        return self._accept(data, reply_session)[0]

    def _drop(self, reason: str, detail: str) -> Dropped:
        self.stats[reason] += 1
        return Dropped(reason, detail)

    def _accept(self, data: bytes, reply_session: str | None) -> list[Message]:
        try:
            p = e2e.decode_packet(self.id, data)
        except e2e.PacketVersionError as err:
            raise self._drop("version", str(err)) from None
        except e2e.PacketError as err:
            raise self._drop("invalid", str(err)) from None
        state = self.state
        if p.encrypted != self.encrypted:
            raise self._drop("invalid", "packet encryption does not match the room policy")
        sender = p.sender.hex()
        epoch_members = state.epochs.get(p.epoch)
        if epoch_members is None:
            newer = p.epoch > state.epoch
            if newer and p.epoch <= state.epoch + MAX_EPOCH_LEAD and sender in state.members:
                raise Stale(p.epoch)
            if newer and sender not in state.members:
                raise self._drop("nonMember", f"{sender} is not a member")
            raise self._drop("invalid", f"unknown epoch {p.epoch}")
        if sender not in epoch_members:
            raise self._drop("nonMember", f"{sender} is not a member of epoch {p.epoch}")
        # Live, a removed member must not keep talking in an epoch whose key
        # it still holds; history written while it was a member stays readable.
        if not self._history and sender not in state.members:
            raise self._drop("nonMember", f"{sender} is no longer a member")
        if not self._history:
            # A packet signed before this receiver listened cannot have been
            # sent to it live: it is a replay of something perhaps acted on.
            if p.sent_at is None or p.sent_at < self._horizon:
                raise self._drop("replayed", "not signed while this receiver was listening")
            if p.sent_at > int(time.time() * 1000) + FUTURE_MS:
                raise self._drop("replayed", "signed more than 30 s in this receiver's future")
        session = p.session.hex()
        if reply_session is not None:
            if session != reply_session:
                raise self._drop("invalid", "the reply does not answer this request")
            if p.index != 0 or p.first_frame != 0 or p.count != 1:
                raise self._drop("invalid", "a reply is one frame, packet 0 of its session")
        lane_id = f"{p.epoch}/{sender}/{session}"
        lane = self._lanes.get(lane_id) if reply_session is None else None
        if lane is None and lane_id in self._retired:
            raise self._drop("replayed", "sender session was retired")
        if lane is None:
            chain = None
            if self.encrypted:
                if p.epoch not in self.keys:
                    raise self._drop("noKey", f"no room key for epoch {p.epoch}")
                ck0 = e2e.initial_chain_key(self.keys[p.epoch], self.id, p.epoch, p.sender, p.session)
                chain = e2e.Chain(ck0, MAX_HISTORY_SKIP if self._history else e2e.MAX_SKIP)
            lane = _Lane(chain)
            if reply_session is None:
                self._track(lane_id, sender, lane)
        if p.index <= lane.last_packet:
            raise self._drop("replayed", f"packet {p.index} of a session already past it")
        if p.first_frame < lane.next_frame:
            raise self._drop("invalid", "frame index went backwards")
        key = None
        if lane.chain is not None:
            try:
                key = lane.chain.key_for(p.index)
            except e2e.PacketError as err:
                reason = "replayed" if "behind" in str(err) else "invalid"
                raise self._drop(reason, str(err)) from None
        # The index is spent whether or not the body opens: its signer can only waste its own session.
        lane.last_packet, lane.next_frame = p.index, p.first_frame + p.count
        if reply_session is not None:
            # A reply's session carries one packet: closed once accepted, so
            # the same reply again is a replay, and it takes no sender slot.
            self._retire(lane_id)
        try:
            frames = e2e.open_packet(self.id, p, key)
        except e2e.PacketError as err:
            raise self._drop("invalid", str(err)) from None
        self.stats["delivered"] += len(frames)
        return [
            Message(self.id, state.subject, sender, p.epoch, session, p.first_frame + i, p.sent_at, f)
            for i, f in enumerate(frames)
        ]

    def _track(self, lane_id: str, sender: str, lane: _Lane) -> None:
        """A new receiving session, within the bounds: a sender's own oldest
        is pushed out past its quota (never someone else's), the oldest of all
        past the total."""
        mine = self._per_sender.setdefault(sender, [])
        while mine and mine[0] not in self._lanes:
            mine.pop(0)  # already pushed out by the total bound
        if len(mine) >= MAX_SESSIONS_PER_SENDER:
            self._retire(mine.pop(0))
        mine.append(lane_id)
        if len(self._lanes) >= MAX_SESSIONS:
            self._retire(next(iter(self._lanes)))
        self._lanes[lane_id] = lane

    def _retire(self, lane_id: str) -> None:
        # Restarting a pushed-out session at CK_0 would accept its old packets again.
        self._lanes.pop(lane_id, None)
        self._retired[lane_id] = None
        if len(self._retired) > MAX_RETIRED:
            del self._retired[next(iter(self._retired))]
