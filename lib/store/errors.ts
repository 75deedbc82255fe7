/**
 * The control-plane store's typed errors: each has a stable machine-readable
 * code, the same on every backend, so callers (and the HTTP layer) can act on
 * it without parsing messages.
 *
 * @module
 */

/** Stable machine-readable error codes; safe to map to HTTP statuses. */
export type StoreErrorCode =
  | "user_exists"
  | "room_exists"
  | "member_exists"
  | "key_exists"
  | "blob_exists"
  | "not_found"
  | "conflict"
  | "invalid_input"
  | "store_unavailable"
  | "outcome_unknown"
  | "schema_too_new"
  | "record_too_new";

/**
 * Base of every error the store throws on purpose.
 *
 * @example
 * ```ts
 * import { StoreError } from "./store.ts";
 * function status(e: unknown): number {
 *   return e instanceof StoreError && e.code === "not_found" ? 404 : 500;
 * }
 * ```
 */
export class StoreError extends Error {
  /** Stable code, independent of the message wording. */
  readonly code: StoreErrorCode;
  /**
   * @example
   * ```ts
   * import { StoreError } from "./store.ts";
   * new StoreError("conflict", "epoch moved");
   * ```
   */
  constructor(code: StoreErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * A user with this signPub already exists; the existing one was left unchanged.
 *
 * @example
 * ```ts
 * import { UserExistsError } from "./store.ts";
 * throw new UserExistsError("ab".repeat(32));
 * ```
 */
export class UserExistsError extends StoreError {
  constructor(signPub: string) {
    super("user_exists", `user exists: ${signPub}`);
  }
}

/**
 * The room id or its subject is already taken.
 *
 * @example
 * ```ts
 * import { RoomExistsError } from "./store.ts";
 * throw new RoomExistsError("ops", "chat.ops");
 * ```
 */
export class RoomExistsError extends StoreError {
  constructor(id: string, subject: string) {
    super("room_exists", `room exists: id ${id} or subject ${subject} is taken`);
  }
}

/**
 * The signPub is already a member of the room.
 *
 * @example
 * ```ts
 * import { MemberExistsError } from "./store.ts";
 * throw new MemberExistsError("ops", "ab".repeat(32));
 * ```
 */
export class MemberExistsError extends StoreError {
  constructor(roomId: string, signPub: string) {
    super("member_exists", `member exists: ${signPub} in room ${roomId}`);
  }
}

/**
 * A sealed key for this (room, epoch, recipient) exists; keys are immutable.
 *
 * @example
 * ```ts
 * import { KeyExistsError } from "./store.ts";
 * throw new KeyExistsError("ops", 1, "ab".repeat(32));
 * ```
 */
export class KeyExistsError extends StoreError {
  constructor(roomId: string, epoch: number, recipient: string) {
    super("key_exists", `sealed key exists: room ${roomId} epoch ${epoch} for ${recipient}`);
  }
}

/**
 * A blob with this id exists.
 *
 * @example
 * ```ts
 * import { BlobExistsError } from "./store.ts";
 * throw new BlobExistsError("b1");
 * ```
 */
export class BlobExistsError extends StoreError {
  constructor(id: string) {
    super("blob_exists", `blob exists: ${id}`);
  }
}

/**
 * The record an update or delete targets does not exist.
 *
 * @example
 * ```ts
 * import { NotFoundError } from "./store.ts";
 * throw new NotFoundError("user", "ab".repeat(32));
 * ```
 */
export class NotFoundError extends StoreError {
  constructor(what: string, key: string) {
    super("not_found", `${what} not found: ${key}`);
  }
}

/**
 * A compare-and-set lost: the current value is not the expected one.
 *
 * @example
 * ```ts
 * import { ConflictError } from "./store.ts";
 * throw new ConflictError("room ops epoch is 2, expected 1");
 * ```
 */
export class ConflictError extends StoreError {
  constructor(message: string) {
    super("conflict", message);
  }
}

/**
 * Input that breaks the record types (e.g. a signPub that is not 64 hex).
 *
 * @example
 * ```ts
 * import { InvalidInputError } from "./store.ts";
 * throw new InvalidInputError("signPub", "must be 64 lowercase hex characters");
 * ```
 */
export class InvalidInputError extends StoreError {
  /** Name of the offending field. */
  readonly field: string;
  /** The `lib/grammar.ts` rule the value broke, when it is a subject or text. */
  readonly rule: string | undefined;
  constructor(field: string, reason: string, rule?: string) {
    super("invalid_input", `invalid ${field}: ${reason}`);
    this.field = field;
    this.rule = rule;
  }
}

/**
 * The backend cannot serve the call (closed, locked, I/O error, no quorum).
 *
 * @example
 * ```ts
 * import { StoreUnavailableError } from "./store.ts";
 * throw new StoreUnavailableError("store is closed");
 * ```
 */
export class StoreUnavailableError extends StoreError {
  constructor(message: string, options?: ErrorOptions) {
    super("store_unavailable", message, options);
  }
}

/**
 * The operation's committing write was sent and never acknowledged (a
 * timeout, or the connection lost while waiting): it may have been stored,
 * or may still be. A {@linkcode StoreUnavailableError}, so whatever fails
 * closed on an unavailable store still does; callers that answer a client
 * say "outcome unknown" instead of "nothing happened", and a retry of the
 * same operation finds either nothing or the value it wrote (compare it
 * before calling the retry's conflict a failure).
 *
 * @example
 * ```ts
 * import { StoreOutcomeUnknownError } from "./store.ts";
 * throw new StoreOutcomeUnknownError("create id.x not acknowledged: timeout");
 * ```
 */
export class StoreOutcomeUnknownError extends StoreUnavailableError {
  override readonly code: StoreErrorCode = "outcome_unknown";
}

/**
 * A stored record does not parse, or has the wrong shape: written by hand,
 * by another program, or damaged on disk. It is unavailable (503), never a
 * crash, and the record's key is carried for the log. A reader of many
 * records (a user's rooms) leaves out the damaged one and reads the rest.
 *
 * @example
 * ```ts
 * import { DamagedRecordError } from "./store.ts";
 * throw new DamagedRecordError("UNIBUS_members/r.0123…", "members is not a list");
 * ```
 */
export class DamagedRecordError extends StoreUnavailableError {
  constructor(readonly key: string, reason: string) {
    super(`damaged control-plane record ${key}: ${reason}`);
  }
}

/**
 * A control-plane record in a format newer than this code reads
 * (lib/store/kv_records.ts KV_RECORD_FORMAT): written by a newer unibus
 * during a rolling upgrade, or left behind by a downgrade. Unavailable (a
 * 503; a login that needs it is refused), never read as if it were the old
 * shape. A reader of many records (a user's rooms) leaves it out, as a
 * damaged one.
 *
 * @example
 * ```ts
 * import { RecordTooNewError } from "./store.ts";
 * throw new RecordTooNewError("users/ab…", 2, 1);
 * ```
 */
export class RecordTooNewError extends StoreUnavailableError {
  override readonly code: StoreErrorCode = "record_too_new";
  constructor(readonly key: string, readonly format: number, readonly known: number) {
    super(
      `control-plane record ${key} is in format ${format}, written by a newer unibus; ` +
        `this one reads up to format ${known}: upgrade this node`,
    );
  }
}

/**
 * The stored schema is newer than this code; refusing it avoids a silent downgrade.
 *
 * @example
 * ```ts
 * import { SchemaTooNewError } from "./store.ts";
 * throw new SchemaTooNewError(3, 2);
 * ```
 */
export class SchemaTooNewError extends StoreError {
  constructor(found: number, known: number) {
    super(
      "schema_too_new",
      `store schema version ${found} is newer than this unibus understands (${known}); ` +
        "upgrade unibus instead of opening it with an older version",
    );
  }
}
