"""What arrives on a subject but is not what it seems: JetStream answers to
whatever reply subject a user set, so any member of any persisted room can
have a stream's ack, an error or a direct get's answer (bytes it stored
itself) delivered on another user's inbox or on a plain room's subject.
nats-server marks most of these in a way the asker cannot remove (a direct
get's answer carries ``Nats-Stream``, a status has a code); an ack or an
error is header-less JSON of a fixed shape."""

from __future__ import annotations

import json
from typing import Any

_ACK_KEYS = {"stream", "seq", "duplicate", "domain", "error", "type"}
#: The header the node puts on its own notices.
NOTICE_HEADER = "Unibus-Notice"


def _has(headers: dict[str, str] | None, name: str) -> bool:
    return bool(headers) and any(k.lower() == name.lower() for k in headers)  # type: ignore[union-attr]


def is_reflected_answer(headers: dict[str, str] | None, data: bytes) -> bool:
    """True when a message is one of JetStream's answers aimed somewhere, never a member's message.

    >>> is_reflected_answer(None, b'{"stream":"ROOM_x","seq":3}')
    True
    >>> is_reflected_answer(None, b'hello')
    False
    """
    if headers:
        return _has(headers, "Nats-Stream") or _has(headers, "Nats-Sequence") or _has(headers, "Status")
    if not data or len(data) > 512 or data[:1] != b"{":
        return False
    try:
        value: Any = json.loads(data)
    except ValueError:
        return False
    if not isinstance(value, dict) or not value or not set(value) <= _ACK_KEYS:
        return False
    is_ack = isinstance(value.get("stream"), str) and type(value.get("seq")) in (int, float)
    return is_ack or isinstance(value.get("error"), dict)


def is_server_notice(headers: dict[str, str] | None) -> bool:
    """A node's notice: marked ``Unibus-Notice: 1`` and bearing none of the
    marks of a JetStream answer (which a member could aim at the inbox)."""
    if not headers or headers.get(NOTICE_HEADER) != "1":
        return False
    return not (_has(headers, "Nats-Stream") or _has(headers, "Nats-Sequence") or _has(headers, "Status"))


def is_ack_of(headers: dict[str, str] | None, data: bytes, stream: str) -> bool:
    """A stream's ack of a stored packet: no headers, and naming ``stream``."""
    if headers:
        return False
    try:
        ack = json.loads(data)
    except ValueError:
        return False
    return (
        isinstance(ack, dict) and not ack.get("error") and type(ack.get("seq")) is int and ack.get("stream") == stream
    )
