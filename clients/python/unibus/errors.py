"""The client's typed errors, the same classes and codes as the TypeScript
client's (lib/client/errors.ts): callers branch on the class or ``code``,
never on message text."""

from __future__ import annotations


class UnibusError(Exception):
    """Base class of every error the client raises on purpose."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ControlPlaneError(UnibusError):
    """The control plane answered with an error status (``status``, ``code``)."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(code, f"control plane: {status} {code}: {message}")
        self.status = status
        #: The answer's ``Retry-After`` in seconds (a 503 ``cluster_degraded`` has one).
        self.retry_after_s = retry_after_s


class UnreachableError(UnibusError):
    """None of the control-plane or NATS seeds could be reached."""

    def __init__(self, message: str) -> None:
        super().__init__("unreachable", message)


class MembershipVerificationError(UnibusError):
    """The server's view of a room disagrees with what its signed log proves."""

    def __init__(self, message: str) -> None:
        super().__init__("membership_unverified", message)


class RoomKeyUnavailableError(UnibusError):
    """No usable room key for an epoch (not sealed to us, or not by an admin)."""

    def __init__(self, message: str) -> None:
        super().__init__("room_key_unavailable", message)


class NotAMemberError(UnibusError):
    """The operation needs a room this client does not belong to."""

    def __init__(self, message: str) -> None:
        super().__init__("not_a_member", message)


class InvalidSubjectError(UnibusError):
    """A room subject breaks the subject grammar; ``rule`` says which rule."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__("invalid_subject", message)
        self.rule = rule


class ClosedError(UnibusError):
    """The client was closed."""

    def __init__(self) -> None:
        super().__init__("closed", "the client is closed")


class RequestTimeoutError(UnibusError):
    """No verified reply arrived within the request's timeout."""

    def __init__(self, message: str) -> None:
        super().__init__("timeout", message)


class NoRespondersError(UnibusError):
    """Nobody was subscribed to the room when the request was sent."""

    def __init__(self, message: str) -> None:
        super().__init__("no_responders", message)
