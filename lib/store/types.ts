/**
 * The records of the control-plane store: users, rooms, members, sealed
 * keys, the change log, blobs, and what the store's reads return.
 *
 * @module
 */

import type { RoomPolicy } from "../api/types.ts";
export type { RoomPolicy } from "../api/types.ts";

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
  /**
   * This user's own limit on connections held at once, overriding the
   * node's `--max-connections-per-user`; absent means the node's.
   */
  maxConnections?: number;
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
