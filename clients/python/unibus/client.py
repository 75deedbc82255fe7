"""The asyncio client: one NATS connection logged in with the identity's
key, the signed control plane, and the rooms this identity is a member of,
each verified from its signed log (docs/protocol.md). The same concepts and
rules as the TypeScript client (lib/client)."""

from __future__ import annotations

import asyncio
import base64
import inspect
import itertools
import json
import os
import re
import ssl
import struct
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Union

import nats
from nats import errors as nats_errors
from nats.aio.msg import Msg

from . import e2e
from .blobs import BlobRef, open_blob, seal_blob
from .control import ControlPlane, check
from .errors import (
    ClosedError,
    ControlPlaneError,
    InvalidSubjectError,
    MembershipVerificationError,
    NoRespondersError,
    RequestTimeoutError,
    UnibusError,
    UnreachableError,
)
from .identity import Identity, verify_kex_binding
from .membership import MAX_CHANGE_MEMBERS, ZERO_HASH, ChangeBody, MemberEntry, sign_change, subject_violation
from .reflected import is_ack_of, is_reflected_answer, is_server_notice
from .room import Dropped, Message, Room, Stale
from .wire import user_nkey

#: The login signature's context (docs/protocol.md §3.2).
LOGIN_CONTEXT = b"unibus/nats-auth/v1\n"
POLICY_NAMES = ("encrypt", "sign", "persist")
_ROOM_ID = re.compile(r"^[0-9a-f]{32}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
#: Direct gets outstanding at once while reading history.
HISTORY_WINDOW = 256
#: Entries a history read holds back waiting for a session's missing packet.
HISTORY_HOLD = 16_384
#: Requests answered at once by one respond() subscription.
RESPOND_CONCURRENCY = 8


@dataclass(frozen=True)
class RoomInfo:
    """A room as the control plane lists it (its word, not yet verified)."""

    id: str
    subject: str
    policy: tuple[str, ...]
    epoch: int


@dataclass(frozen=True)
class ErrorEvent:
    """A failure nobody awaited: which room (if one), what, and the error."""

    room: str | None
    what: str
    error: BaseException


RoomRef = Union[str, Room, RoomInfo]
Handler = Callable[[Message], Union[None, Awaitable[None]]]
Responder = Callable[[Message], Union[bytes, str, None, Awaitable[Union[bytes, str, None]]]]


class Subscription:
    """A handler's place on a room; ``stats`` counts what the room delivered and dropped."""

    def __init__(self, client: Client, room_id: str, handler: Handler) -> None:
        self._client, self._room_id, self._handler = client, room_id, handler

    @property
    def stats(self) -> dict[str, int]:
        room = self._client._rooms.get(self._room_id)
        return dict(room.stats) if room else {}

    async def unsubscribe(self) -> None:
        await self._client._unlisten(self._room_id, self._handler)


def is_reply_subject_of(reply: str, requester: str) -> bool:
    """A reply subject a replier may answer on: under the requester's own
    inbox, literal tokens, not the node's notice space.

    >>> is_reply_subject_of("_INBOX." + "ab" * 32 + ".x.1", "ab" * 32)
    True
    >>> is_reply_subject_of("agents.room", "ab" * 32)
    False
    """
    if not _HEX64.match(requester):
        return False
    prefix = f"_INBOX.{requester}."
    if not reply.startswith(prefix) or len(reply) > 255:
        return False
    tokens = reply[len(prefix) :].split(".")
    if tokens[0] == "unibus":
        return False
    return all(t and all(0x21 <= ord(c) <= 0x7E for c in t) and t not in ("*", ">") for t in tokens)


def _policy(names: Iterable[str]) -> tuple[str, ...]:
    wanted = set(names)
    unknown = wanted - set(POLICY_NAMES)
    if unknown:
        raise ValueError(f"unknown policy {sorted(unknown)}: use any of {list(POLICY_NAMES)}")
    if "encrypt" in wanted and "sign" not in wanted:
        raise ValueError("an encrypted room is always signed: add 'sign'")
    return tuple(p for p in POLICY_NAMES if p in wanted)


def _policy_of(view_policy: Any) -> tuple[str, ...]:
    if isinstance(view_policy, dict):
        return tuple(p for p in POLICY_NAMES if view_policy.get(p))
    return tuple(view_policy)


def _seq_of(headers: dict[str, str] | None) -> int | None:
    value = (headers or {}).get("Nats-Sequence")
    return int(value) if value and value.isdigit() else None


async def connect(
    nats_servers: list[str],
    ctrl_urls: list[str],
    identity: Identity,
    ca: str | None = None,
    name: str | None = None,
    on_error: Callable[[ErrorEvent], None] | None = None,
) -> Client:
    """Logs in to NATS with ``identity`` and returns a :class:`Client`.

    ``ca`` pins TLS on both planes to that CA file (``tls://`` and
    ``https://`` seeds). ``on_error`` hears of what failed in the background
    (a session refresh, a room reload); without it each distinct failure is
    one line on stderr.

    Example::

        async with await unibus.connect(["nats://127.0.0.1:4222"], ["http://127.0.0.1:8470"], ident) as c:
            await c.publish("agents.inbox", "hello")
    """
    if not nats_servers:
        raise ValueError("at least one NATS seed is needed")
    control = ControlPlane(ctrl_urls, identity, ca)
    client = Client(identity, control, on_error)
    await client._dial(nats_servers, ca, name)
    return client


class Client:
    """A connected unibus client; make one with :func:`connect`."""

    def __init__(
        self, identity: Identity, control: ControlPlane, on_error: Callable[[ErrorEvent], None] | None
    ) -> None:
        self.identity = identity
        self.control = control
        self._on_error = on_error
        self._nc = nats.NATS()
        self._inbox = f"_INBOX.{identity.sign_pub_hex}"
        self._rooms: dict[str, Room] = {}
        self._by_subject: dict[str, str] = {}
        # One NATS subscription per room, each packet opened once and handed
        # to every handler: a second subscription opening the same packet
        # would find it already passed and drop it as a replay.
        self._subs: dict[str, Any] = {}
        self._listeners: dict[str, list[Handler]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._handles: dict[str, str | None] = {}
        self._closed = False
        self._warned: set[str] = set()
        self._refresh_lock = asyncio.Lock()
        self._reconnected: asyncio.Event | None = None
        self._reply_prefix: str | None = None
        self._awaiting: dict[str, asyncio.Future[Msg]] = {}
        self._tokens = itertools.count(1)
        # Packets to persisted rooms until their stream acks them: id -> (subject, stream, data, first, last).
        self._pending: dict[str, list[Any]] = {}
        self._abandoned = 0
        self._settled = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- connection ----

    async def _dial(self, servers: list[str], ca: str | None, name: str | None) -> None:
        tls = None
        if ca or any(urllib.parse.urlsplit(s).scheme == "tls" for s in servers):
            tls = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()

        def sign(nonce: str) -> bytes:
            # Only a server nonce is signed, never arbitrary bytes: the
            # context prefix keeps this signature from meaning anything else.
            if not _NONCE.match(nonce):
                raise ValueError("the server's nonce is not one")
            return base64.b64encode(self.identity.sign(LOGIN_CONTEXT + nonce.encode()))

        async def reconnected() -> None:
            if self._reconnected is not None:
                self._reconnected.set()
            else:
                # Notices sent while the connection was down are lost (a
                # removal cuts the connection before its notice can land).
                self._spawn(self._background(None, "reload", self._reload_changed()))

        async def error(err: Exception) -> None:
            # A failed first dial is raised below, once, not reported here too.
            if self._nc.is_connected or self._nc.is_reconnecting:
                self._failed(None, "nats", err)

        # Each seed once, in the order given: a refused login is final (no
        # other node admits a key this one refused), an unreachable seed is
        # not. nats-py's own first dial tries one seed only without
        # reconnects, so the seeds are rotated here and reconnects are turned
        # on once logged in.
        last: Exception | None = None
        for i in range(len(servers)):
            nc = nats.NATS()
            # nats-py sends a public nkey only from a seed it holds itself; the
            # key stays in this process's Identity, so the nkey is set directly
            # and the token (never checked by the node) makes nats-py sign.
            nc._public_nkey = user_nkey(self.identity.sign_pub)  # noqa: SLF001
            try:
                await nc.connect(
                    servers=servers[i:] + servers[:i], dont_randomize=True, signature_cb=sign, token="unibus",
                    tls=tls, name=name or "unibus-python", inbox_prefix=self._inbox, reconnected_cb=reconnected,
                    error_cb=error, connect_timeout=5, allow_reconnect=False, max_reconnect_attempts=120,
                    reconnect_time_wait=1,
                )
            except Exception as err:  # noqa: BLE001 - nats-py raises many kinds; one clear error out
                if isinstance(err, nats_errors.AuthorizationError) or "authorization" in str(err).lower():
                    raise UnreachableError(f"NATS login refused by {servers[i]}: authorization violation") from None
                last = err
                continue
            nc.options["allow_reconnect"] = True
            self._nc = nc
            break
        else:
            raise UnreachableError(f"no NATS seed could be reached: {last!r}")
        await self._nc.subscribe(f"{self._inbox}.unibus.refresh", cb=self._on_refresh_notice)
        await self._nc.subscribe(f"{self._inbox}.unibus.room", cb=self._on_room_notice)
        await self._nc.subscribe(f"{self._inbox}.unibus.ack.*", cb=self._on_ack)
        self._spawn(self._resend_loop())


    @property
    def nats(self) -> nats.NATS:
        """The underlying nats-py connection (for plain NATS use beside rooms)."""
        return self._nc

    def is_connected(self) -> bool:
        return self._nc.is_connected

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Sends what is buffered and closes; packets to persisted rooms not
        yet acknowledged are abandoned (call :meth:`flush` first to wait)."""
        if self._closed:
            return
        self._closed = True
        for fut in self._awaiting.values():
            if not fut.done():
                fut.set_exception(ClosedError())
        for task in list(self._tasks):
            task.cancel()
        try:
            await self._nc.flush(timeout=2)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        await self._nc.close()

    def _ensure_open(self) -> None:
        if self._closed:
            raise ClosedError()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _failed(self, room: str | None, what: str, err: BaseException) -> None:
        if self._on_error is not None:
            try:
                self._on_error(ErrorEvent(room, what, err))
            except Exception:  # noqa: BLE001 - the program's handler must not stop the client
                pass
            return
        key = f"{what}:{room or ''}:{type(err).__name__}"
        if key in self._warned:
            return
        self._warned.add(key)
        print(f"unibus client: {what} failed{f' for room {room}' if room else ''}: {err}", file=sys.stderr)

    async def refresh_session(self) -> None:
        """Re-authenticates so that the connection carries the current ACL.
        NATS fixes rights at login: after joining a room a client refreshes
        before it can use the room's subject (automatic on the node's notice).
        Subscriptions survive it."""
        self._ensure_open()
        async with self._refresh_lock:
            back = asyncio.Event()
            self._reconnected = back
            try:
                await self._nc.force_reconnect()
                await asyncio.wait_for(back.wait(), 10)
            except asyncio.TimeoutError:
                raise UnreachableError("the session did not come back within 10 s") from None
            finally:
                self._reconnected = None
            await self._nc.flush()
            await self._reload_changed()

    async def _reload_changed(self) -> None:
        # Room notices sent while the connection was down are lost: every
        # room held is checked against the server's list and reloaded when
        # its epoch moved, it left the list, or it lacks its current key.
        if not self._rooms:
            return
        try:
            listed = {r.id: r.epoch for r in await self.list_rooms()}
        except UnibusError:
            listed = {}
        for rid, room in list(self._rooms.items()):
            if listed.get(rid) != room.state.epoch or (room.encrypted and room.state.epoch not in room.keys):
                try:
                    await self._reload(rid)
                except Exception as err:  # noqa: BLE001 - reported, the others still reload
                    self._lost_room(rid, err)

    async def _on_refresh_notice(self, msg: Msg) -> None:
        # Only the node's own notices count: JetStream's answers can be aimed here.
        if not is_server_notice(msg.headers):
            return
        self._spawn(self._background(None, "refresh-session", self.refresh_session()))

    async def _on_room_notice(self, msg: Msg) -> None:
        if not is_server_notice(msg.headers):
            return
        rid = msg.data.decode("ascii", "replace")
        if rid in self._rooms:
            self._spawn(self._reload_or_forget(rid))

    async def _reload_or_forget(self, rid: str) -> None:
        try:
            await self._reload(rid)
        except Exception as err:  # noqa: BLE001
            self._lost_room(rid, err)

    async def _background(self, room: str | None, what: str, coro: Awaitable[Any]) -> None:
        try:
            await coro
        except Exception as err:  # noqa: BLE001 - nobody awaits this: reported instead
            self._failed(room, what, err)

    def _lost_room(self, rid: str, err: BaseException) -> None:
        # Deleted, or this identity left or was removed: end its subscriptions
        # rather than re-subscribe to a subject the ACL no longer grants.
        if isinstance(err, ControlPlaneError) and err.status == 404:
            self._forget(rid)
        else:
            self._failed(rid, "reload", err)

    def _forget(self, rid: str) -> None:
        self._listeners.pop(rid, None)
        sub = self._subs.pop(rid, None)
        if sub is not None:
            self._spawn(self._quiet_unsubscribe(sub))
        room = self._rooms.pop(rid, None)
        if room is not None:
            self._by_subject.pop(room.subject, None)

    @staticmethod
    async def _quiet_unsubscribe(sub: Any) -> None:
        try:
            await sub.unsubscribe()
        except nats_errors.Error:
            pass

    # ---- rooms ----

    async def room(self, ref: RoomRef) -> Room:
        """The verified room (by id, subject, :class:`Room` or :class:`RoomInfo`), loaded on first use."""
        self._ensure_open()
        rid = self._known_id(ref)
        if rid is not None and rid in self._rooms:
            return self._rooms[rid]
        if rid is not None:
            return await self._reload(rid)
        subject = str(ref)
        self._check_subject(subject)
        view = await self.control.json("GET", f"/v1/rooms/by-subject/{urllib.parse.quote(subject, safe='')}")
        return await self._reload(view["id"])

    def _known_id(self, ref: RoomRef) -> str | None:
        if isinstance(ref, (Room, RoomInfo)):
            return ref.id
        if _ROOM_ID.match(ref):
            return ref
        return self._by_subject.get(ref)

    @staticmethod
    def _check_subject(subject: str) -> None:
        why = subject_violation(subject)
        if why is not None:
            raise InvalidSubjectError(why, f"room subject {subject!r}: {why}")

    def _lock(self, rid: str) -> asyncio.Lock:
        return self._locks.setdefault(rid, asyncio.Lock())

    async def _reload(self, rid: str) -> Room:
        async with self._lock(rid):
            view = await self.control.json("GET", f"/v1/rooms/{rid}")
            keys = (await self.control.json("GET", f"/v1/rooms/{rid}/keys"))["keys"]
            room = self._rooms.get(rid)
            if room is None:
                room = Room(self.identity, view, keys)
                self._rooms[rid] = room
                self._by_subject[room.subject] = rid
            else:
                room.update(view, keys)
            await self._ensure_current_key(room)
            return room

    async def _ensure_current_key(self, room: Room) -> None:
        # An admin who finds the current epoch without a key (its maker
        # crashed between the change and the upload) makes one, so the room
        # never stalls.
        state = room.state
        if not room.encrypted or state.epoch in room.keys:
            return
        me = state.members.get(self.identity.sign_pub_hex)
        if me is None or me.role != "admin":
            return
        try:
            await self._distribute_key(room, state.epoch)
        except ControlPlaneError as err:
            if err.status != 409:
                raise
            # Another admin was first: take theirs.
            keys = (await self.control.json("GET", f"/v1/rooms/{room.id}/keys"))["keys"]
            room.update(await self.control.json("GET", f"/v1/rooms/{room.id}"), keys)

    async def _distribute_key(self, room: Room, epoch: int) -> None:
        room_key = os.urandom(32)
        sealed = [
            {
                "recipient": m.member,
                "sealed": base64.b64encode(
                    e2e.seal_room_key(room.id, epoch, room_key, bytes.fromhex(m.member), bytes.fromhex(m.kex),
                                      self.identity)
                ).decode(),
            }
            for m in room.state.epochs[epoch].values()
        ]
        await self.control.json("PUT", f"/v1/rooms/{room.id}/keys/{epoch}", {"keys": sealed})
        room.keys[epoch] = room_key

    async def _member_entries(self, wanted: list[tuple[str, str]]) -> list[MemberEntry]:
        # The directory's kex binding of each member is checked before it goes
        # into a change: a server that swaps a member's key-exchange key
        # (to read the room) is caught here.
        entries = []
        for sign_pub, role in wanted:
            if not _HEX64.match(sign_pub):
                raise ValueError(f"not a member key (64 hex characters): {sign_pub!r}")
            user = await self.control.json("GET", f"/v1/users/{sign_pub}")
            kex, kex_sig = user.get("kexPub"), user.get("kexSig")
            if not kex or not kex_sig:
                raise MembershipVerificationError(f"{sign_pub} has no key-exchange key on record yet")
            if not verify_kex_binding(sign_pub, kex, kex_sig):
                raise MembershipVerificationError(
                    f"the server's key-exchange key for {sign_pub} is not signed by that user"
                )
            entries.append(MemberEntry(sign_pub, kex, kex_sig, role))
        return entries

    async def create_room(
        self, subject: str, policy: Iterable[str] = ("encrypt", "sign"), members: Iterable[str] = ()
    ) -> Room:
        """Creates a room on ``subject`` with this identity as its first
        admin and ``members`` (Ed25519 public keys, hex) in it, and refreshes
        the session so that the subject is usable at once.

        ``policy`` names any of ``encrypt``, ``sign``, ``persist``
        (``encrypt`` needs ``sign``); the default is an encrypted room.
        """
        self._ensure_open()
        names = _policy(policy)
        self._check_subject(subject)
        me = self.identity
        wanted = list(dict.fromkeys(m for m in members if m != me.sign_pub_hex))
        first = wanted[: MAX_CHANGE_MEMBERS - 1]
        adds = await self._member_entries([(m, "member") for m in first])
        rid = os.urandom(16).hex()
        change = sign_change(
            ChangeBody(rid, 0, ZERO_HASH, "create", 0, me.sign_pub_hex, int(time.time() * 1000), subject=subject,
                       policy=names, member=me.sign_pub_hex, kex=me.kex_pub_hex, kex_sig=me.kex_sig_hex,
                       role="admin", adds=adds or None),
            me,
        )
        view = await self.control.json("POST", "/v1/rooms", {"change": {"text": change.text, "sig": change.sig}})
        room = Room(me, view, [])
        self._rooms[rid], self._by_subject[subject] = room, rid
        rest = wanted[len(first) :]
        if rest:
            # Epoch 0 is passed at once: only the last epoch gets a key.
            await self.add_members(room, rest)
        elif room.encrypted:
            await self._distribute_key(room, 0)
        await self.refresh_session()
        return room

    async def _post_change(self, room: Room, body: ChangeBody, leaving: bool = False) -> dict | None:
        change = sign_change(body, self.identity)
        payload = {"change": {"text": change.text, "sig": change.sig}}
        return await self.control.json(
            "POST", f"/v1/rooms/{room.id}/changes", payload, ok=(200, 201, 204) if leaving else ()
        )

    async def _change(self, ref: RoomRef, build: Callable[[Room], ChangeBody], leaving: bool = False) -> Room:
        self._ensure_open()
        rid = (await self.room(ref)).id
        for attempt in range(4):
            room = await self._reload(rid)
            try:
                view = await self._post_change(room, build(room), leaving)
            except ControlPlaneError as err:
                # Another change landed first: rebuild on the new head.
                if err.status == 409 and err.code == "conflict" and attempt < 3:
                    continue
                raise
            if leaving:
                self._forget(rid)
                return room
            assert view is not None
            async with self._lock(rid):
                room.update(view, (await self.control.json("GET", f"/v1/rooms/{rid}/keys"))["keys"])
                await self._ensure_current_key(room)
            return room
        raise AssertionError("unreachable")

    def _base(self, room: Room, op: str, **fields: Any) -> ChangeBody:
        s = room.state
        return ChangeBody(room.id, s.seq + 1, s.head, op, s.epoch + 1, self.identity.sign_pub_hex,
                          int(time.time() * 1000), **fields)

    async def add_member(self, ref: RoomRef, sign_pub: str, role: str = "member") -> Room:
        """Adds a member and rotates the room to a new epoch whose key is sealed to every member."""
        [entry] = await self._member_entries([(sign_pub, role)])
        return await self._change(
            ref, lambda r: self._base(r, "add", member=entry.member, kex=entry.kex, kex_sig=entry.kex_sig,
                                      role=entry.role)
        )

    async def add_members(self, ref: RoomRef, members: Iterable[str | tuple[str, str]]) -> Room:
        """Adds several members (keys, or ``(key, role)``) in one change per
        128, one new epoch and one new key sealed to every member."""
        self._ensure_open()
        wanted = [(m, "member") if isinstance(m, str) else (m[0], m[1]) for m in members]
        entries = await self._member_entries(wanted)
        room = await self._reload((await self.room(ref)).id)
        for i in range(0, len(entries), MAX_CHANGE_MEMBERS):
            chunk = entries[i : i + MAX_CHANGE_MEMBERS]
            if len(chunk) == 1:
                e = chunk[0]
                body = self._base(room, "add", member=e.member, kex=e.kex, kex_sig=e.kex_sig, role=e.role)
            else:
                body = self._base(room, "add", adds=chunk)
            view = await self._post_change(room, body)
            assert view is not None
            room.update(view, [])
        async with self._lock(room.id):
            room.update(await self.control.json("GET", f"/v1/rooms/{room.id}"),
                        (await self.control.json("GET", f"/v1/rooms/{room.id}/keys"))["keys"])
            await self._ensure_current_key(room)
        return room

    async def remove_member(self, ref: RoomRef, sign_pub: str) -> Room:
        """Removes a member and rotates the room: the new epoch's key is sealed
        only to those who remain, and the node cuts the removed member's connections."""
        return await self._change(ref, lambda r: self._base(r, "remove", member=sign_pub))

    async def leave(self, ref: RoomRef) -> None:
        """Leaves a room on this identity's own authority (the last admin
        cannot: 409 ``last_admin``); the room's subscriptions end."""
        me = self.identity.sign_pub_hex
        await self._change(ref, lambda r: self._base(r, "remove", member=me), leaving=True)

    async def delete_room(self, ref: RoomRef) -> None:
        """Deletes a room (admins only); its stream and blobs go with it."""
        room = await self.room(ref)
        await self.control.json("DELETE", f"/v1/rooms/{room.id}", ok=(404,))
        self._forget(room.id)

    async def list_rooms(self) -> list[RoomInfo]:
        """The rooms this identity is a member of, as the control plane lists them."""
        self._ensure_open()
        rooms = (await self.control.json("GET", "/v1/rooms?view=summary"))["rooms"]
        return [RoomInfo(r["id"], r["subject"], _policy_of(r["policy"]), int(r["epoch"])) for r in rooms]

    # ---- sending ----

    async def publish(self, ref: RoomRef, data: bytes | str) -> None:
        """Sends one message (sealed and signed as the room's policy says).
        To a persisted room it is resent until its stream acknowledges it;
        :meth:`flush` waits for that."""
        await self.publish_many(ref, [data])

    async def publish_many(self, ref: RoomRef, items: list[bytes | str]) -> None:
        """Sends several messages as one packet with one signature (up to 1024)."""
        self._ensure_open()
        if not items:
            return
        room = await self.room(ref)
        if room.plain:
            for item in items:
                await self._send(room, item.encode() if isinstance(item, str) else bytes(item))
            return
        for i in range(0, len(items), e2e.MAX_FRAMES):
            packet, _ = room.seal_many(items[i : i + e2e.MAX_FRAMES])
            await self._send(room, packet)

    async def _send(self, room: Room, data: bytes) -> None:
        if "persist" not in room.policy:
            await self._nc.publish(room.wire_subject, data)
            return
        # Stored even when the stream is between leaders: resent every second
        # until its own stream acks it (at most 60 s); the stream keeps one
        # copy by Nats-Msg-Id, and receivers drop a resent copy as a replay.
        msg_id = os.urandom(16).hex()
        now = time.monotonic()
        self._pending[msg_id] = [room.wire_subject, f"ROOM_{room.id}", data, now, now]
        self._settled.clear()
        await self._publish_durable(msg_id)

    async def _publish_durable(self, msg_id: str) -> None:
        subject, _, data, _, _ = self._pending[msg_id]
        await self._nc.publish(subject, data, reply=f"{self._inbox}.unibus.ack.{msg_id}",
                               headers={"Nats-Msg-Id": msg_id})

    async def _on_ack(self, msg: Msg) -> None:
        msg_id = msg.subject.rsplit(".", 1)[-1]
        pending = self._pending.get(msg_id)
        # Only the room's own stream's ack settles it: anything else here was aimed at us.
        if pending is None or not is_ack_of(msg.headers, msg.data, pending[1]):
            return
        del self._pending[msg_id]
        if not self._pending:
            self._settled.set()

    async def _resend_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for msg_id, p in list(self._pending.items()):
                if now - p[3] > 60:
                    del self._pending[msg_id]
                    self._abandoned += 1
                elif now - p[4] >= 1 and self._nc.is_connected:
                    p[4] = now
                    try:
                        await self._publish_durable(msg_id)
                    except nats_errors.Error:
                        pass
            if not self._pending:
                self._settled.set()

    async def flush(self, timeout: float = 65) -> None:
        """Returns once everything published reached the server and what went
        to persisted rooms is stored; raises naming how many never were."""
        self._ensure_open()
        await self._nc.flush()
        if self._pending:
            await asyncio.wait_for(self._settled.wait(), timeout)
        if self._abandoned:
            lost, self._abandoned = self._abandoned, 0
            raise UnibusError("not_stored", f"{lost} packet(s) were never acknowledged by their room's stream")

    # ---- receiving ----

    async def _handle_of(self, sender: str) -> str | None:
        if not sender:
            return None
        if sender not in self._handles:
            if len(self._handles) >= 10_000:
                self._handles.clear()  # bounded: names are looked up again when needed
            try:
                self._handles[sender] = (await self.control.json("GET", f"/v1/users/{sender}")).get("handle")
            except UnibusError:
                self._handles[sender] = None
        return self._handles[sender]

    async def _open(self, rid: str, data: bytes, reply_session: str | None = None) -> list[Message]:
        room = self._rooms.get(rid)
        if room is None:
            return []
        for attempt in range(4):
            try:
                return [room.open_reply(data, reply_session)] if reply_session else room.open(data)
            except Stale:
                pass
            except Dropped as drop:
                # A missing key is worth waiting for only while the current
                # epoch's is missing too (it is being uploaded).
                if drop.reason != "noKey" or room.state.epoch in room.keys or attempt == 3:
                    raise
                room.stats["noKey"] -= 1
            if attempt > 0:
                await asyncio.sleep(0.05 * 2**attempt)
            try:
                await self._reload(rid)
            except Exception as err:  # noqa: BLE001
                self._failed(rid, "reload", err)
        room.stats["noKey"] += 1
        raise Dropped("noKey", "the room's newer epoch could not be learned")

    async def _receive(self, rid: str, msg: Msg) -> list[Message]:
        room = self._rooms.get(rid)
        if room is None:
            return []
        if room.plain:
            # No signature to check: JetStream's answers aimed here are told apart by their marks.
            if is_reflected_answer(msg.headers, msg.data):
                room.stats["invalid"] += 1
                return []
            room.stats["delivered"] += 1
            return [Message(room.id, room.subject, "", 0, "", 0, None, bytes(msg.data))]
        try:
            frames = await self._open(rid, bytes(msg.data))
        except Dropped:
            return []
        sender = frames[0].sender
        handle = await self._handle_of(sender)
        # A persisted room's packets ask their stream for an ack under the
        # sender's `unibus.ack.` inbox: that is no request.
        asks = bool(msg.reply) and not msg.reply.startswith(f"_INBOX.{sender}.unibus.ack.")
        return [replace(f, handle=handle, reply=msg.reply if asks else None) for f in frames]

    async def subscribe(self, ref: RoomRef, handler: Handler) -> Subscription:
        """Calls ``handler`` (sync or async) with every :class:`Message` that
        verifies, one at a time, in order; the rest is counted in ``stats``."""
        self._ensure_open()
        room = await self.room(ref)
        rid = room.id
        self._listeners.setdefault(rid, []).append(handler)
        if rid not in self._subs:

            async def on_msg(msg: Msg) -> None:
                for m in await self._receive(rid, msg):
                    for h in list(self._listeners.get(rid, [])):
                        try:
                            out = h(m)
                            if inspect.isawaitable(out):
                                await out
                        except Exception as err:  # noqa: BLE001 - a handler's failure must not end the room
                            self._failed(rid, "handler", err)

            self._subs[rid] = await self._nc.subscribe(room.wire_subject, cb=on_msg)
            await self._nc.flush()
        return Subscription(self, rid, handler)

    async def _unlisten(self, rid: str, handler: Handler) -> None:
        handlers = self._listeners.get(rid, [])
        if handler in handlers:
            handlers.remove(handler)
        if not handlers:
            self._listeners.pop(rid, None)
            sub = self._subs.pop(rid, None)
            if sub is not None:
                await self._quiet_unsubscribe(sub)

    async def messages(self, ref: RoomRef, max_pending: int = 1024) -> AsyncIterator[Message]:
        """``async for msg in client.messages(room)``: the room's messages as
        :meth:`subscribe` delivers them; the subscription ends with the loop.
        A consumer slower than the room holds up to ``max_pending`` messages,
        then nats-py's own limits apply."""
        queue: asyncio.Queue[Message] = asyncio.Queue(max_pending)
        sub = await self.subscribe(ref, queue.put)
        try:
            while True:
                yield await queue.get()
        finally:
            await sub.unsubscribe()

    # ---- request / reply ----

    async def _reply_inbox(self) -> str:
        if self._reply_prefix is None:
            prefix = f"{self._nc.new_inbox()}."

            async def on_reply(msg: Msg) -> None:
                fut = self._awaiting.get(msg.subject[len(prefix) :])
                if fut is None or fut.done():
                    return
                status = (msg.headers or {}).get("Status")
                if status == "503" and not msg.data:
                    fut.set_exception(NoRespondersError("nobody is subscribed to the room"))
                elif not is_reflected_answer(msg.headers, msg.data):
                    # (A persisted room stores the request and its stream acks
                    # it here: that is JetStream's answer, not a member's reply.)
                    fut.set_result(msg)

            await self._nc.subscribe(f"{prefix}*", cb=on_reply)
            self._reply_prefix = prefix
        return self._reply_prefix

    async def request(self, ref: RoomRef, data: bytes | str, timeout: float = 5.0) -> Message:
        """Sends a request and returns the verified reply; its ``sender`` is
        the member who answered. Raises :class:`RequestTimeoutError`,
        :class:`NoRespondersError`, or :class:`UnibusError` ``reply_rejected``."""
        self._ensure_open()
        room = await self.room(ref)
        if room.plain:
            raise UnibusError("unsigned_room", "request/reply needs a signed room")
        packet, reply_session = room.seal_request(data)
        token = str(next(self._tokens))
        fut: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        inbox = await self._reply_inbox()
        self._awaiting[token] = fut
        try:
            await self._nc.publish(room.wire_subject, packet, reply=inbox + token)
            msg = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise RequestTimeoutError(f"no reply within {timeout} s") from None
        finally:
            self._awaiting.pop(token, None)
        try:
            [reply] = await self._open(room.id, bytes(msg.data), reply_session)
        except Dropped as drop:
            raise UnibusError("reply_rejected", f"the reply did not verify ({drop})") from None
        return replace(reply, handle=await self._handle_of(reply.sender))

    async def reply(self, request: Message, data: bytes | str) -> None:
        """Answers a request a handler received (``request.reply`` set), once."""
        if not request.reply:
            raise ValueError("this message did not ask for a reply")
        # The reply subject travels outside the signed packet: answering
        # wherever it says would let a requester make this member publish
        # into any room it is in. So only under the proven requester's inbox.
        if not is_reply_subject_of(request.reply, request.sender):
            raise UnibusError(
                "reply_refused",
                f"refusing to reply to {request.reply!r}: not under the requester's inbox _INBOX.{request.sender}.",
            )
        room = await self.room(request.room)
        await self._nc.publish(request.reply, room.seal_reply(request, data))

    async def respond(self, ref: RoomRef, handler: Responder) -> Subscription:
        """Answers the room's requests: ``handler`` (sync or async) gets each
        request :class:`Message` and returns the reply's bytes or str (None:
        no reply). Up to 8 requests are handled at once."""
        limit = asyncio.Semaphore(RESPOND_CONCURRENCY)

        async def answer(m: Message) -> None:
            try:
                out = handler(m)
                if inspect.isawaitable(out):
                    out = await out
                if out is not None:
                    await self.reply(m, out)
            except Exception as err:  # noqa: BLE001 - one failed answer must not stop the others
                self._failed(m.room, "respond", err)
            finally:
                limit.release()

        async def on_request(m: Message) -> None:
            if m.reply is None:
                return
            await limit.acquire()
            self._spawn(answer(m))

        return await self.subscribe(ref, on_request)

    # ---- history ----

    async def _direct_get(self, stream: str, body: str) -> tuple[int, bytes] | None:
        subject = f"$JS.API.DIRECT.GET.{stream}"
        try:
            msg = await self._nc.request(subject, body.encode(), timeout=10)
        except nats_errors.TimeoutError:
            raise UnreachableError(f"no answer from the stream {stream} within 10 s") from None
        except nats_errors.NoRespondersError:
            raise UnreachableError(f"the stream {stream} is not reachable") from None
        h = msg.headers or {}
        if h.get("Status") == "404":
            return None
        seq = _seq_of(h)
        # An answer is taken only when it names the stream asked; a reply
        # subject is not secret, and JetStream answers wherever it is told.
        if h.get("Nats-Stream") != stream or seq is None:
            raise UnibusError("history_invalid", f"an answer from outside {stream}")
        return seq, bytes(msg.data)

    async def history(self, ref: RoomRef, limit: int | None = None, start_seq: int | None = None) -> list[Message]:
        """A persisted room's stored messages, oldest first, verified and
        decrypted like live ones (``seq`` set); at most ``limit``, from stream
        sequence ``start_seq`` on. Epochs whose keys this identity never
        received are skipped (counted as ``noKey``)."""
        self._ensure_open()
        if limit is not None and limit < 0:
            raise ValueError("limit is a whole number >= 0")
        room = await self.room(ref)
        if "persist" not in room.policy:
            raise UnibusError("not_persisted", f"room {room.subject} keeps no history")
        stream, wire = f"ROOM_{room.id}", room.wire_subject
        first = await self._direct_get(stream, f'{{"seq":{max(1, start_seq or 1)},"next_by_subj":"{wire}"}}')
        last = await self._direct_get(stream, f'{{"last_by_subj":"{wire}"}}')
        if first is None or last is None or limit == 0:
            return []
        reader = _HistoryReader(room.for_history())
        gate = asyncio.Semaphore(64)

        async def get(seq: int) -> tuple[int, bytes] | None:
            async with gate:
                return await self._direct_get(stream, f'{{"seq":{seq}}}')

        seq = first[0]
        while seq <= last[0] and (limit is None or reader.delivered < limit):
            window = range(seq, min(last[0], seq + HISTORY_WINDOW - 1) + 1)
            for got in await asyncio.gather(*(get(s) for s in window)):
                if got is not None:
                    reader.add(*got)
            seq = window[-1] + 1
        out = reader.finish()
        out = out if limit is None else out[:limit]
        return [replace(m, handle=await self._handle_of(m.sender)) for m in out]

    # ---- blobs ----

    async def put_blob(self, ref: RoomRef, data: bytes) -> BlobRef:
        """Encrypts ``data`` under a fresh key and stores it for the room;
        send the returned :class:`BlobRef` in a message for members to fetch it."""
        room = await self.room(ref)
        sealed, key = seal_blob(room.id, bytes(data))
        status, headers, body = await self.control.request(
            "POST", f"/v1/rooms/{room.id}/blobs", sealed, "application/octet-stream"
        )
        check(status, headers, body)
        return BlobRef(json.loads(body)["id"], key, len(data))

    async def get_blob(self, ref: RoomRef, blob: BlobRef) -> bytes:
        """A blob's plaintext; raises if it was altered or is another room's."""
        room = await self.room(ref)
        status, headers, body = await self.control.request("GET", f"/v1/blobs/{urllib.parse.quote(blob.id)}")
        check(status, headers, body)
        return open_blob(room.id, blob.key, body, blob.id)

    async def delete_blob(self, blob: BlobRef | str) -> None:
        """Deletes a blob (its uploader or a room admin)."""
        blob_id = blob.id if isinstance(blob, BlobRef) else blob
        await self.control.json("DELETE", f"/v1/blobs/{urllib.parse.quote(blob_id)}", ok=(404,))


class _HistoryReader:
    """Verifies stored packets with each sender session's packets in index
    order: a packet resent while its stream had no leader is stored after
    later ones, and a chain only moves forward. A packet that follows its
    session's last one is taken at once; one after a gap waits (at most
    HISTORY_HOLD entries in all) for the missing one. Messages come back in
    stream order."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.delivered = 0
        self._next: dict[str, int] = {}
        self._held: dict[str, dict[int, list[tuple[int, bytes]]]] = {}
        self._held_count = 0
        self._out: list[Message] = []

    @staticmethod
    def _lane(data: bytes) -> tuple[str, int] | None:
        # Only for ordering: the packet is verified when it is taken.
        if len(data) < e2e.HEADER_BYTES:
            return None
        epoch, = struct.unpack(">I", data[40:44])
        index, = struct.unpack(">I", data[60:64])
        return f"{epoch}/{data[8:40].hex()}/{data[44:60].hex()}", index

    def add(self, seq: int, data: bytes) -> None:
        lane = self._lane(data)
        if lane is None:
            self._take(seq, data, None)
            return
        lane_id, index = lane
        expected = self._next.get(lane_id)
        if (expected is None and index == 0) or (expected is not None and index <= expected):
            self._take(seq, data, lane)
            self._release(lane_id, until_gap=True)
            return
        self._held.setdefault(lane_id, {}).setdefault(index, []).append((seq, data))
        self._held_count += 1
        if self._held_count > HISTORY_HOLD:
            self._release(next(iter(self._held)), until_gap=False)

    def _take(self, seq: int, data: bytes, lane: tuple[str, int] | None) -> None:
        try:
            frames = self.room.open(data)
        except (Dropped, Stale):
            return
        if lane is not None:
            self._next[lane[0]] = lane[1] + 1
        self.delivered += len(frames)
        self._out.extend(replace(f, seq=seq) for f in frames)

    def _release(self, lane_id: str, until_gap: bool) -> None:
        held = self._held.get(lane_id)
        while held:
            index = min(held)
            if until_gap and index > self._next.get(lane_id, 0):
                break
            for seq, data in held.pop(index):
                self._held_count -= 1
                self._take(seq, data, (lane_id, index))
        if not held:
            self._held.pop(lane_id, None)

    def finish(self) -> list[Message]:
        for lane_id in list(self._held):
            self._release(lane_id, until_gap=False)
        return sorted(self._out, key=lambda m: (m.seq or 0, m.index))
