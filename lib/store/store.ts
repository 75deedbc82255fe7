/**
 * The control-plane `Store` contract: users, rooms, members, sealed room keys,
 * anti-replay nonces and blobs. Two backends implement it (SQLite and
 * JetStream KV), so every write that must not clobber is "create if absent"
 * and fails with a typed error; callers never need multi-row transactions.
 *
 * @example
 * ```ts
 * import { type Store, UserExistsError } from "./store.ts";
 * async function enrol(store: Store, signPub: string) {
 *   try {
 *     await store.addUser({ signPub, kexPub: null, kexSig: null, handle: "ada", role: "member" });
 *   } catch (e) {
 *     if (!(e instanceof UserExistsError)) throw e;
 *   }
 * }
 * ```
 * @module
 */

import { handleViolation, subjectViolation, textViolation, type Violation } from "../grammar.ts";

/** Role of a user on the bus, or of a member within a room. */
export type Role = "admin" | "member";

/** A user is never deleted, only revoked, so audit trails keep resolving. */
export type UserStatus = "active" | "revoked";

/** A registered identity, keyed by its Ed25519 public key. */
export interface User {
  /** Ed25519 public key, 64 lowercase hex characters. */
  signPub: string;
  /** X25519 key-exchange public key, 64 lowercase hex, or null until set. */
  kexPub: string | null;
  /** Signature binding `kexPub` to `signPub`, hex; opaque to the store. */
  kexSig: string | null;
  handle: string;
  role: Role;
  status: UserStatus;
  /** Milliseconds since the Unix epoch. */
  createdAt: number;
}

/** Fields accepted by {@linkcode Store.addUser}; status starts "active". */
export interface NewUser {
  signPub: string;
  kexPub: string | null;
  kexSig: string | null;
  handle: string;
  role: Role;
  /** Defaults to `Date.now()`. */
  createdAt?: number;
}

/** What a room requires of its traffic. */
export interface RoomPolicy {
  encrypt: boolean;
  sign: boolean;
  persist: boolean;
}

/** A room: a NATS subject plus a policy and a key epoch. */
export interface Room {
  id: string;
  subject: string;
  policy: RoomPolicy;
  /** signPub of the creator. */
  createdBy: string;
  createdAt: number;
  /** Current room-key epoch; starts at 0 and only moves by compare-and-set. */
  epoch: number;
}

/** Fields accepted by {@linkcode Store.createRoom}; the epoch starts at 0. */
export interface NewRoom {
  id: string;
  subject: string;
  policy: RoomPolicy;
  createdBy: string;
  /** Defaults to `Date.now()`. */
  createdAt?: number;
}

/** A member of a room. */
export interface Member {
  roomId: string;
  signPub: string;
  role: Role;
  addedBy: string;
  addedAt: number;
  /** Signed membership change, stored verbatim; opaque to the store. */
  change: string | null;
}

/** Fields accepted by {@linkcode Store.addMember}. */
export interface NewMember {
  roomId: string;
  signPub: string;
  role: Role;
  addedBy: string;
  change: string | null;
  /** Defaults to `Date.now()`. */
  addedAt?: number;
}

/** A room key of one epoch, sealed to one recipient's X25519 key. */
export interface SealedKey {
  roomId: string;
  epoch: number;
  /** signPub of the member the key is sealed to. */
  recipient: string;
  /** Base64 sealed box; opaque to the store. */
  sealed: string;
  /** signPub of the member who sealed it. */
  sealedBy: string;
  createdAt: number;
}

/** One entry of {@linkcode Store.putSealedKeys}; room and epoch are shared. */
export interface NewSealedKey {
  recipient: string;
  sealed: string;
  sealedBy: string;
  /** Defaults to `Date.now()`. */
  createdAt?: number;
}

/**
 * One entry of a room's membership change log: a signed change stored
 * verbatim. The store does not interpret it (see `lib/e2e/membership.ts`);
 * it only guarantees that each seq is written once.
 */
export interface RoomChange {
  /** Position in the log, 0 for the room's creation. */
  seq: number;
  /** The exact signed text of the change. */
  text: string;
  /** Standard base64 of the signature over `text`. */
  sig: string;
}

/**
 * A member as a room's member set names it, for {@linkcode Store.createRoom}'s
 * genesis and {@linkcode Store.applyRoomChange}. A member already in the room
 * with the same role keeps its stored row (addedAt, addedBy, change).
 */
export interface RoomMemberSpec {
  signPub: string;
  role: Role;
  addedBy: string;
  /** Signed membership change that (last) added the member, stored verbatim. */
  change: string | null;
  /** Defaults to `Date.now()`. */
  addedAt?: number;
}

/** A room's first change (seq 0) and the member set it creates. */
export interface RoomGenesis {
  change: { text: string; sig: string };
  members: RoomMemberSpec[];
}

/** The member set and key epoch that hold after a change. */
export interface RoomStateAfter {
  members: RoomMemberSpec[];
  epoch: number;
}

/**
 * One entry of the store's change feed ({@linkcode Store.watchChanges}): what
 * may have changed, so a consumer re-reads only that. `all` means "anything
 * may have changed" (a backend that cannot tell, or a feed that lost events).
 */
export type StoreChange =
  | { kind: "user"; signPub: string }
  | { kind: "room"; roomId: string }
  | { kind: "all" };

/** A running change feed. */
export interface StoreWatch {
  /** Resolves once changes made from now on are certain to be reported. */
  ready: Promise<void>;
  stop(): Promise<void>;
}

/** Blob metadata, i.e. a blob without its bytes. */
export interface BlobMeta {
  id: string;
  roomId: string;
  /** signPub of the uploader. */
  owner: string;
  /** Byte length of `data`. */
  size: number;
  createdAt: number;
}

/** A stored blob with its bytes. */
export interface Blob extends BlobMeta {
  data: Uint8Array;
}

/** Fields accepted by {@linkcode Store.putBlob}; size is derived from data. */
export interface NewBlob {
  id: string;
  roomId: string;
  owner: string;
  data: Uint8Array;
  /** Defaults to `Date.now()`. */
  createdAt?: number;
}

/**
 * What one user holds, for quotas: the rooms they created (and still exist),
 * and the blobs they uploaded (into rooms that still exist).
 */
export interface RoomCounts {
  /** Rooms whose `createdBy` is the user. */
  rooms: number;
  /** Of those, the ones with `policy.persist` (each owns a JetStream stream). */
  persisted: number;
}

/** A user and the rooms it is a member of, read together ({@linkcode Store.getUserAccess}). */
export interface UserAccess {
  user: User | null;
  rooms: Room[];
}

/** The blobs one user uploaded: how many and their total size in bytes. */
export interface BlobUsage {
  count: number;
  bytes: number;
}

/** The control-plane store, implemented by SQLite and by JetStream KV. */
export interface Store {
  readonly kind: "sqlite" | "kv";

  /** Creates a user; {@linkcode UserExistsError} if the signPub exists. */
  addUser(user: NewUser): Promise<User>;
  /** The user, or null if absent. */
  getUser(signPub: string): Promise<User | null>;
  /** All users, revoked included, sorted by createdAt then handle. */
  listUsers(): Promise<User[]>;
  /** Marks a user revoked (idempotent); {@linkcode NotFoundError} if absent. */
  revokeUser(signPub: string): Promise<void>;
  /**
   * Sets the key-exchange key and its binding signature if the user has none
   * (a registered kex key never changes: peers have sealed keys to it).
   * Setting the same pair again is a no-op; a different pair is
   * {@linkcode ConflictError} with the stored pair unchanged; NotFoundError if
   * the user is absent.
   */
  setUserKex(signPub: string, kexPub: string, kexSig: string): Promise<void>;

  /**
   * Creates a room at epoch 0; {@linkcode RoomExistsError} if the id or subject
   * is taken. With `genesis`, the room's change 0 and its first member set are
   * written with it as one unit: no reader ever sees the room without them.
   */
  createRoom(room: NewRoom, genesis?: RoomGenesis): Promise<Room>;
  getRoom(id: string): Promise<Room | null>;
  getRoomBySubject(subject: string): Promise<Room | null>;
  /** Rooms the signPub is a member of, sorted by id. */
  listRoomsForMember(signPub: string): Promise<Room[]>;
  /**
   * What the auth callout decides a login on: the user (null if absent) and
   * the rooms it is a member of, as {@linkcode getUser} and
   * {@linkcode listRoomsForMember} would read them at the time of the call:
   * never older than the last write committed before it, from any process or
   * node. A backend may answer from a cache only where it can prove that
   * (SQLite: lib/store/sqlite.ts). Throws when the store is unreachable,
   * never answers from memory then. The result is shared: do not mutate it.
   */
  getUserAccess(signPub: string): Promise<UserAccess>;
  /**
   * How many existing rooms `createdBy` this signPub, and how many of those
   * persist; zeros for an unknown key. Quotas read it before a create.
   */
  countRoomsCreatedBy(signPub: string): Promise<RoomCounts>;
  /**
   * Moves the epoch from `expectedEpoch` to `newEpoch`; {@linkcode ConflictError}
   * if the current epoch differs, {@linkcode NotFoundError} if the room is absent.
   */
  setRoomEpoch(id: string, expectedEpoch: number, newEpoch: number): Promise<void>;
  /**
   * Deletes a room with its members, sealed keys, change log and blobs;
   * NotFoundError if absent. A room later created under the same id or
   * subject starts empty, even if the deletion was interrupted half-way.
   */
  deleteRoom(id: string): Promise<void>;

  /**
   * Appends signed membership change `seq` on top of change `seq - 1` (or as
   * the first change, seq 0) and, with it, makes `after` the room's member
   * set and raises its epoch to `after.epoch` (never lowers it). This is the
   * compare-and-set that serialises concurrent membership changes across
   * processes and nodes: of two calls for one seq exactly one wins.
   *
   * The member set is versioned by `seq`: it is only written while `seq` is
   * the newest change, so a late or repeated older change never overwrites
   * a newer member set. Repeating the stored change at `seq` verbatim
   * succeeds (and completes its member set if `seq` is still the newest).
   *
   * {@linkcode ConflictError} if another change holds `seq` or `seq` does not
   * follow the newest change; {@linkcode NotFoundError} if the room is absent.
   */
  applyRoomChange(
    roomId: string,
    seq: number,
    change: { text: string; sig: string },
    after: RoomStateAfter,
  ): Promise<void>;
  /** The room's change log ascending by seq; empty if the room has none or is absent. */
  listRoomChanges(roomId: string): Promise<RoomChange[]>;

  /** {@linkcode MemberExistsError} if present, NotFoundError if the room is absent. */
  addMember(member: NewMember): Promise<Member>;
  /** NotFoundError if the member is absent. */
  removeMember(roomId: string, signPub: string): Promise<void>;
  /** Members sorted by addedAt then signPub. */
  listMembers(roomId: string): Promise<Member[]>;
  getMember(roomId: string, signPub: string): Promise<Member | null>;

  /**
   * Stores the sealed keys of one epoch. Keys are immutable: if any
   * (room, epoch, recipient) already exists with another sealed value or
   * sealer this throws {@linkcode KeyExistsError} and existing keys are left
   * unchanged. One stored exactly as given counts as stored, so a retry of
   * a request whose outcome was unknown completes it instead of failing on
   * its own first half. NotFoundError if the room is absent.
   */
  putSealedKeys(roomId: string, epoch: number, keys: NewSealedKey[]): Promise<SealedKey[]>;
  getSealedKey(roomId: string, epoch: number, recipient: string): Promise<SealedKey | null>;
  /** The recipient's keys for a room, ascending by epoch. */
  listSealedKeysFor(roomId: string, recipient: string): Promise<SealedKey[]>;

  /**
   * Atomically records a nonce: true if it was new (or its previous use had
   * expired at `now`) and is now stored, false if it is still live.
   */
  rememberNonce(nonce: string, expiresAt: number, now?: number): Promise<boolean>;
  /** Removes nonces that expired at or before `now`; returns how many. */
  pruneNonces(now: number): Promise<number>;

  /** {@linkcode BlobExistsError} if the id exists; NotFoundError if the room is absent. */
  putBlob(blob: NewBlob): Promise<BlobMeta>;
  getBlob(id: string): Promise<Blob | null>;
  getBlobMeta(id: string): Promise<BlobMeta | null>;
  /** NotFoundError if absent. */
  deleteBlob(id: string): Promise<void>;
  /**
   * How many existing blobs this signPub owns and their total `size`; zeros
   * for an unknown key. Quotas read it before an upload.
   */
  blobUsageOf(owner: string): Promise<BlobUsage>;

  /**
   * Calls `onChange` after users, rooms or members change, whoever changed
   * them (this process, a CLI, another node); the enforcer is driven by it.
   * Events may be coalesced or repeated, never silently dropped: a feed that
   * may have missed something reports `{ kind: "all" }`.
   */
  watchChanges(onChange: (change: StoreChange) => void): StoreWatch;

  /** Releases the backend; later calls fail with {@linkcode StoreUnavailableError}. */
  close(): Promise<void>;
}

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
  | "schema_too_new";

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

// Validation lives beside the contract so every backend rejects the same input
// with the same error, before anything is written.

const HEX64 = /^[0-9a-f]{64}$/;
const HEX = /^(?:[0-9a-f]{2})+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
// Ids end up in KV keys and URLs, so keep them to a conservative alphabet.
const ID = /^[A-Za-z0-9_-][A-Za-z0-9._=-]{0,127}$/;
/** Longest stored text field (a signed change, a nonce), in characters. */
export const MAX_TEXT_LENGTH = 64 * 1024;
const MAX_TEXT = MAX_TEXT_LENGTH;

function fail(field: string, reason: string, rule?: string): never {
  throw new InvalidInputError(field, reason, rule);
}

function failOn(field: string, violation: Violation<string> | null): void {
  if (violation) fail(field, violation.message, violation.rule);
}

/**
 * Checks a record field against the store's cheap type rules and throws
 * {@linkcode InvalidInputError} on the first violation.
 *
 * @example
 * ```ts
 * import { check } from "./store.ts";
 * check.signPub("signPub", "ab".repeat(32)); // ok
 * ```
 */
export const check = {
  signPub(field: string, v: unknown): void {
    if (typeof v !== "string" || !HEX64.test(v)) fail(field, "must be 64 lowercase hex characters");
  },
  kexPub(field: string, v: unknown): void {
    if (typeof v !== "string" || !HEX64.test(v)) fail(field, "must be 64 lowercase hex characters");
  },
  hex(field: string, v: unknown): void {
    if (typeof v !== "string" || v.length > MAX_TEXT || !HEX.test(v)) {
      fail(field, "must be non-empty lowercase hex");
    }
  },
  base64(field: string, v: unknown): void {
    if (typeof v !== "string" || v.length === 0 || v.length > MAX_TEXT || !BASE64.test(v)) {
      fail(field, "must be non-empty padded base64");
    }
  },
  id(field: string, v: unknown): void {
    if (typeof v !== "string" || !ID.test(v)) {
      fail(field, "must be 1-128 characters of A-Z a-z 0-9 . _ = - not starting with '.'");
    }
  },
  // Subjects and text follow lib/grammar.ts, the rule every other boundary
  // applies, so nothing the API accepts is cut or rewritten here (SQLite cuts
  // a string at NUL and turns a lone surrogate into U+FFFD).
  subject(field: string, v: unknown): void {
    failOn(field, subjectViolation(v));
  },
  handle(field: string, v: unknown): void {
    failOn(field, handleViolation(v));
  },
  text(field: string, v: unknown): void {
    failOn(field, textViolation(v, { maxLength: MAX_TEXT, lineBreaks: true }));
  },
  role(field: string, v: unknown): void {
    if (v !== "admin" && v !== "member") fail(field, 'must be "admin" or "member"');
  },
  count(field: string, v: unknown): void {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      fail(field, "must be a non-negative integer");
    }
  },
  bool(field: string, v: unknown): void {
    if (typeof v !== "boolean") fail(field, "must be a boolean");
  },
  bytes(field: string, v: unknown): void {
    if (!(v instanceof Uint8Array)) fail(field, "must be a Uint8Array");
  },
};

/** Validates a {@linkcode NewUser} (through {@linkcode newUserRow}, before either backend writes). */
function validateNewUser(u: NewUser): void {
  check.signPub("signPub", u.signPub);
  if (u.kexPub !== null) check.kexPub("kexPub", u.kexPub);
  if (u.kexSig !== null) check.hex("kexSig", u.kexSig);
  if ((u.kexPub === null) !== (u.kexSig === null)) {
    fail("kexSig", "kexPub and kexSig must be both set or both null");
  }
  check.handle("handle", u.handle);
  check.role("role", u.role);
  if (u.createdAt !== undefined) check.count("createdAt", u.createdAt);
}

/** Validates a {@linkcode NewRoom}. */
function validateNewRoom(r: NewRoom): void {
  check.id("id", r.id);
  check.subject("subject", r.subject);
  if (typeof r.policy !== "object" || r.policy === null) fail("policy", "must be an object");
  check.bool("policy.encrypt", r.policy.encrypt);
  check.bool("policy.sign", r.policy.sign);
  check.bool("policy.persist", r.policy.persist);
  check.signPub("createdBy", r.createdBy);
  if (r.createdAt !== undefined) check.count("createdAt", r.createdAt);
}

/**
 * Validates a {@linkcode NewMember}.
 *
 * @example
 * ```ts
 * import { validateNewMember } from "./store.ts";
 * const k = "ab".repeat(32);
 * validateNewMember({ roomId: "ops", signPub: k, role: "member", addedBy: k, change: null });
 * ```
 */
export function validateNewMember(m: NewMember): void {
  check.id("roomId", m.roomId);
  check.signPub("signPub", m.signPub);
  check.role("role", m.role);
  check.signPub("addedBy", m.addedBy);
  if (m.change !== null) check.text("change", m.change);
  if (m.addedAt !== undefined) check.count("addedAt", m.addedAt);
}

/** Validates one {@linkcode NewSealedKey}. */
function validateNewSealedKey(k: NewSealedKey): void {
  check.signPub("recipient", k.recipient);
  check.base64("sealed", k.sealed);
  check.signPub("sealedBy", k.sealedBy);
  if (k.createdAt !== undefined) check.count("createdAt", k.createdAt);
}

/**
 * Validates a {@linkcode NewBlob}.
 *
 * @example
 * ```ts
 * import { validateNewBlob } from "./store.ts";
 * validateNewBlob({ id: "b1", roomId: "ops", owner: "ab".repeat(32), data: new Uint8Array(1) });
 * ```
 */
export function validateNewBlob(b: NewBlob): void {
  check.id("id", b.id);
  check.id("roomId", b.roomId);
  check.signPub("owner", b.owner);
  check.bytes("data", b.data);
  if (b.createdAt !== undefined) check.count("createdAt", b.createdAt);
}

/** Validates one {@linkcode RoomMemberSpec}. */
function validateRoomMemberSpec(m: RoomMemberSpec): void {
  if (typeof m !== "object" || m === null) fail("members", "must be objects");
  check.signPub("signPub", m.signPub);
  check.role("role", m.role);
  check.signPub("addedBy", m.addedBy);
  if (m.change !== null) check.text("change", m.change);
  if (m.addedAt !== undefined) check.count("addedAt", m.addedAt);
}

/** Validates a member set (no key twice). */
function validateMemberSet(members: RoomMemberSpec[]): void {
  if (!Array.isArray(members)) fail("members", "must be an array");
  const seen = new Set<string>();
  for (const m of members) {
    validateRoomMemberSpec(m);
    if (seen.has(m.signPub)) fail("members", `${m.signPub} twice`);
    seen.add(m.signPub);
  }
}

/**
 * Validates the arguments of {@linkcode Store.applyRoomChange}.
 *
 * @example
 * ```ts
 * import { validateAppliedChange } from "./store.ts";
 * validateAppliedChange("ops", 1, { text: "unibus/…\n", sig: "AAAA" }, { members: [], epoch: 0 });
 * ```
 */
export function validateAppliedChange(
  roomId: string,
  seq: number,
  change: { text: string; sig: string },
  after: RoomStateAfter,
): void {
  validateRoomChange(roomId, seq, change);
  if (typeof after !== "object" || after === null) fail("after", "must be an object");
  validateMemberSet(after.members);
  check.count("after.epoch", after.epoch);
}

/**
 * Validates a {@linkcode RoomGenesis}.
 *
 * @example
 * ```ts
 * import { validateGenesis } from "./store.ts";
 * validateGenesis("ops", { change: { text: "x\n", sig: "AAAA" }, members: [] });
 * ```
 */
export function validateGenesis(roomId: string, g: RoomGenesis): void {
  if (typeof g !== "object" || g === null) fail("genesis", "must be an object");
  validateRoomChange(roomId, 0, g.change);
  validateMemberSet(g.members);
}

/** Validates the arguments of {@linkcode Store.applyRoomChange}'s change. */
function validateRoomChange(
  roomId: string,
  seq: number,
  change: { text: string; sig: string },
): void {
  check.id("roomId", roomId);
  check.count("seq", seq);
  if (typeof change !== "object" || change === null) fail("change", "must be an object");
  check.text("change.text", change.text);
  check.base64("change.sig", change.sig);
}

/**
 * Validates the arguments of {@linkcode Store.rememberNonce}.
 *
 * @example
 * ```ts
 * import { validateNonce } from "./store.ts";
 * validateNonce("n-1", Date.now() + 60_000, Date.now());
 * ```
 */
export function validateNonce(nonce: string, expiresAt: number, now: number): void {
  check.text("nonce", nonce);
  if (nonce.length > 256) fail("nonce", "must be at most 256 characters");
  check.count("expiresAt", expiresAt);
  check.count("now", now);
}

/**
 * Validates the arguments of {@linkcode Store.setRoomEpoch}: the epoch only
 * moves forward, since going back would reuse an epoch whose keys are
 * immutable and maybe leaked.
 *
 * @example
 * ```ts
 * import { validateEpochMove } from "./store.ts";
 * validateEpochMove("ops", 0, 1);
 * ```
 */
export function validateEpochMove(id: string, expectedEpoch: number, newEpoch: number): void {
  check.id("id", id);
  check.count("expectedEpoch", expectedEpoch);
  check.count("newEpoch", newEpoch);
  if (newEpoch <= expectedEpoch) fail("newEpoch", "must be greater than expectedEpoch");
}

/**
 * The stored form of a new user (validated; status "active", createdAt
 * defaulted), as both backends write it.
 *
 * @example
 * ```ts
 * import { newUserRow } from "./store.ts";
 * newUserRow({ signPub: "ab".repeat(32), kexPub: null, kexSig: null, handle: "ada", role: "admin" });
 * ```
 */
export function newUserRow(user: NewUser): User {
  validateNewUser(user);
  return {
    signPub: user.signPub,
    kexPub: user.kexPub,
    kexSig: user.kexSig,
    handle: user.handle,
    role: user.role,
    status: "active",
    createdAt: user.createdAt ?? Date.now(),
  };
}

/**
 * The stored form of a new room (validated; epoch 0, createdAt defaulted).
 *
 * @example
 * ```ts
 * import { newRoomRow } from "./store.ts";
 * newRoomRow({ id: "ops", subject: "chat.ops", policy: { encrypt: true, sign: true, persist: false }, createdBy: "ab".repeat(32) });
 * ```
 */
export function newRoomRow(room: NewRoom): Room {
  validateNewRoom(room);
  return {
    id: room.id,
    subject: room.subject,
    policy: { ...room.policy },
    createdBy: room.createdBy,
    createdAt: room.createdAt ?? Date.now(),
    epoch: 0,
  };
}

/**
 * The stored form of one epoch's sealed keys: validated, no recipient
 * twice, createdAt defaulted. Both backends refuse the same input.
 *
 * @example
 * ```ts
 * import { sealedKeyRows } from "./store.ts";
 * const k = "ab".repeat(32);
 * sealedKeyRows("ops", 0, [{ recipient: k, sealed: "AAAA", sealedBy: k }]);
 * ```
 */
export function sealedKeyRows(roomId: string, epoch: number, keys: NewSealedKey[]): SealedKey[] {
  check.id("roomId", roomId);
  check.count("epoch", epoch);
  if (!Array.isArray(keys) || keys.length === 0) fail("keys", "must be a non-empty array");
  const seen = new Set<string>();
  const now = Date.now();
  return keys.map((k) => {
    validateNewSealedKey(k);
    if (seen.has(k.recipient)) fail("keys", `${k.recipient} twice`);
    seen.add(k.recipient);
    return {
      roomId,
      epoch,
      recipient: k.recipient,
      sealed: k.sealed,
      sealedBy: k.sealedBy,
      createdAt: k.createdAt ?? now,
    };
  });
}

/**
 * The stored form of one member (addedAt defaulted to `now`), as both
 * backends write it; the caller has validated it.
 *
 * @example
 * ```ts
 * import { memberRow } from "./store.ts";
 * const k = "ab".repeat(32);
 * memberRow({ signPub: k, role: "admin", addedBy: k, change: null }, Date.now());
 * ```
 */
export function memberRow(m: RoomMemberSpec | NewMember, now: number): Omit<Member, "roomId"> {
  return {
    signPub: m.signPub,
    role: m.role,
    addedBy: m.addedBy,
    addedAt: m.addedAt ?? now,
    change: m.change,
  };
}
