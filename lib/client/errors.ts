/**
 * Typed errors of the client library: callers branch on the class (or
 * `code`), never on message text.
 *
 * @module
 */

/** Base class of every error the client throws on purpose. */
export class UnibusError extends Error {
  override name = "UnibusError";
  constructor(readonly code: string, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** The control plane answered with an error status. */
export class ControlPlaneError extends UnibusError {
  override name = "ControlPlaneError";
  constructor(
    readonly status: number,
    code: string,
    message: string,
    /** The answer's `Retry-After`, in seconds (a 503 `cluster_degraded` has one). */
    readonly retryAfterS?: number,
  ) {
    super(code, `control plane: ${status} ${code}: ${message}`);
  }
}

/** None of the control-plane or NATS seeds could be reached. */
export class UnreachableError extends UnibusError {
  override name = "UnreachableError";
  constructor(message: string, options?: ErrorOptions) {
    super("unreachable", message, options);
  }
}

/** The server's view of a room disagrees with what its signed log proves. */
export class MembershipVerificationError extends UnibusError {
  override name = "MembershipVerificationError";
  constructor(message: string) {
    super("membership_unverified", message);
  }
}

/** No usable room key for an epoch (not sealed to us, or not from an admin). */
export class RoomKeyUnavailableError extends UnibusError {
  override name = "RoomKeyUnavailableError";
  constructor(message: string) {
    super("room_key_unavailable", message);
  }
}

/** The operation needs a room this client does not belong to. */
export class NotAMemberError extends UnibusError {
  override name = "NotAMemberError";
  constructor(message: string) {
    super("not_a_member", message);
  }
}

/**
 * A room subject breaks the subject grammar (`lib/grammar.ts`); refused
 * before anything is sent. `rule` names the broken rule.
 */
export class InvalidSubjectError extends UnibusError {
  override name = "InvalidSubjectError";
  constructor(readonly rule: string, message: string) {
    super("invalid_subject", message);
  }
}

/** The client was closed. */
export class ClosedError extends UnibusError {
  override name = "ClosedError";
  constructor() {
    super("closed", "the client is closed");
  }
}
