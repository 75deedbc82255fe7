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

export * from "./errors.ts";
export * from "./types.ts";
export * from "./validate.ts";

import type {
  Blob,
  BlobMeta,
  BlobUsage,
  Member,
  NewBlob,
  NewMember,
  NewRoom,
  NewSealedKey,
  NewUser,
  Room,
  RoomChange,
  RoomCounts,
  RoomGenesis,
  RoomStateAfter,
  SealedKey,
  StoreChange,
  StoreWatch,
  User,
  UserAccess,
} from "./types.ts";

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
   * Sets the user's own connection limit (1 to 100,000), or with null goes
   * back to the node's; NotFoundError if the user is absent.
   */
  setUserMaxConnections(signPub: string, max: number | null): Promise<void>;

  /**
   * Creates a room at epoch 0; {@linkcode RoomExistsError} if the id or subject
   * is taken. With `genesis`, the room's change 0 and its first member set are
   * written with it as one unit: no reader ever sees the room without them.
   */
  createRoom(room: NewRoom, genesis?: RoomGenesis): Promise<Room>;
  getRoom(id: string): Promise<Room | null>;
  /** Every room, sorted by id (backups, and checks that run over all rooms). */
  listRooms(): Promise<Room[]>;
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
