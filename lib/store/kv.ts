/**
 * The control-plane {@linkcode Store} on JetStream KV, so every node of a
 * cluster serves the same users, rooms, members, sealed keys and nonces.
 * Blobs, larger than a NATS message, live in a JetStream object store.
 *
 * KV has no multi-key transactions. Every write that must not clobber is a KV
 * `create` (absent only) or an `update` at the revision read, retried on a
 * lost race; no correctness rests on a lock in one process, so any number of
 * nodes (and the CLI) may write at once.
 *
 * ## Layout
 *
 * | bucket | key | value |
 * |---|---|---|
 * | UNIBUS_users | `<signPub>` | user |
 * | UNIBUS_rooms | `id.<room>` | room + its incarnation `inc` |
 * | UNIBUS_rooms | `subject.<b64url subject>` | `{id, inc}`: the subject claim |
 * | UNIBUS_rooms | `creator.<signPub>.<room>.<inc>` | `{}`: quota hint, see invariant 5 |
 * | UNIBUS_members | `<room>.<inc>` | member set, with `seq` and the change `seq` |
 * | UNIBUS_room_changes | `<room>.<inc>.<seq>` | signed change |
 * | UNIBUS_room_keys | `<room>.<inc>.<recipient>.<epoch>` | sealed key |
 * | UNIBUS_rooms_by_member | `<signPub>` | room ids: a hint, see below |
 * | UNIBUS_nonces | `<b64url nonce>` | expiry |
 * | UNIBUS_nonces | `exp.<slot>.<b64url nonce>` | expiry: pruning hint, see invariant 6 |
 * | UNIBUS_blob_meta | `<blob>`, `room.<room>.<inc>.<blob>` | metadata, room index |
 * | UNIBUS_blob_meta | `owner.<signPub>.<blob>.<unique>` | `{}`: quota hint, invariant 5 |
 * | OBJ UNIBUS_blobs | `<blob>.<unique>` | bytes |
 *
 * ## Invariants (why a crash between two writes never grants access)
 *
 * 1. **A room is visible only when its id record and its subject claim agree**
 *    (same id and incarnation). Creation writes the member set and genesis
 *    change first (under a fresh incarnation nobody reads yet), then the
 *    subject claim, then the id record, and checks the claim is still its own.
 *    A half-created room, or one whose subject another creation took over, is
 *    invisible: it grants nothing, and its leftovers are reclaimed.
 * 2. **Everything of a room is keyed by its incarnation.** Deleting removes
 *    the id record first (the room and all access to it are gone at once),
 *    then the rest; whatever an interrupted deletion leaves behind sits under
 *    the old incarnation, which a re-created room never reads.
 * 3. **Access comes from the member set only.** `UNIBUS_rooms_by_member` is a
 *    superset hint for finding a member's rooms: entries are added before the
 *    member set grants, removed after it stops granting, and every read checks
 *    the member set. A stale entry costs a read, never access.
 * 4. **The member set is the serialisation point of membership changes.** It
 *    carries the seq of the change it follows and that change's text; change
 *    n replaces it only at the revision where it holds n - 1. The change log
 *    key is written after (a crash before it leaves the change in the member
 *    set, from which reads and the next change restore it), so an older
 *    change can never overwrite a newer member set.
 * 5. **Quota counts read only the user's own hints, and check each.** A room's
 *    `creator.` entry is written before its subject claim (so every visible
 *    room has one) and removed after its id record; a blob's `owner.` entry
 *    before its metadata (the blob's commit) and removed after it. A count
 *    lists the user's entries and counts only those whose room (or blob) is
 *    visible under the same incarnation (or object) and names the user: a
 *    stale entry costs a read, never a quota slot, and no live record is
 *    ever missed, so a crash can never let a user past a quota.
 * 6. **Nonce expiry comes from the bucket's max age; the `exp.` entries only
 *    make pruning sooner and cheaper.** An accepted nonce gets an entry under
 *    its expiry's slot; pruning lists the slots that can hold expired nonces
 *    and deletes a nonce only if it is still expired at its revision. A
 *    nonce whose entry was never written is forgotten by the max age.
 *
 * @example
 * ```ts
 * import { connect } from "@nats-io/transport-node";
 * import { openKvStore } from "./kv.ts";
 * const nc = await connect({ servers: "127.0.0.1:4250" });
 * const store = await openKvStore({ nc, replicas: 1 });
 * console.log(await store.listUsers());
 * await store.close();
 * ```
 * @module
 */

import { type KV, KvWatchInclude } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { DEFAULT_SKEW_MS } from "../auth/request_signing.ts";
import type { Logger } from "../log.ts";
import { KvAccess } from "./kv_access.ts";
import { KvRooms } from "./kv_rooms.ts";
import {
  b64url,
  type BlobRecord,
  blobRoomKey,
  cmp,
  definitely,
  encode,
  metaOf,
  newIncarnation,
  NONCE_SLOT_MS,
  nonceExpiryKey,
  ownerKey,
  roomPrefix,
  type RoomRead,
  tok,
  untok,
} from "./kv_records.ts";
import { type Buckets, openBuckets } from "./kv_buckets.ts";
import {
  type Blob,
  BlobExistsError,
  type BlobMeta,
  type BlobUsage,
  check,
  ConflictError,
  InvalidInputError,
  KeyExistsError,
  type Member,
  type NewBlob,
  type NewMember,
  type NewRoom,
  type NewSealedKey,
  type NewUser,
  newUserRow,
  NotFoundError,
  type Room,
  type RoomChange,
  type RoomCounts,
  type RoomGenesis,
  type RoomStateAfter,
  type SealedKey,
  sealedKeyRows,
  type Store,
  type StoreChange,
  StoreUnavailableError,
  type StoreWatch,
  type User,
  type UserAccess,
  UserExistsError,
  validateNewBlob,
  validateNonce,
} from "./store.ts";

/**
 * Nonces stay at least twice the signed-request clock window (±skew, so
 * 2 × skew wide): a nonce is live until its request's timestamp + skew, at
 * most 2 × skew after it is stored, and the bucket keeps it twice that.
 */
export const NONCE_MAX_AGE_MS = 2 * 2 * DEFAULT_SKEW_MS;

/** Options of {@linkcode openKvStore}. */
export interface KvStoreOptions {
  /** A connection with JetStream rights on the buckets (serve's internal one). */
  nc: NatsConnection;
  /** 1 or 3; R1 is logged as not HA. */
  replicas: 1 | 3;
  /** Default 120 s. */
  bootstrapTimeoutMs?: number;
  /** Per-request timeout; an unreachable store answers within it. Default 2 s. */
  opTimeoutMs?: number;
  /** Close `nc` on {@linkcode Store.close} (the CLI's own connection). */
  ownsConnection?: boolean;
  /**
   * Whether a read may fall back to this node's replica right now (R3): true
   * only while a majority of the cluster's nodes is alive and talking, so a
   * node cut off from its peers never answers from its own copy (it fails
   * closed, as it must with two of three down). Default: never.
   */
  replicaReads?: () => boolean | Promise<boolean>;
  log?: Logger;
}

/** The users bucket's replication, as `user add --store kv` prints it. */
export interface ReplicationState {
  replicas: number;
  leader: string | null;
  /** Followers that are current, of `followers`. */
  current: number;
  followers: number;
  messages: number;
}

/**
 * Opens the KV store: creates or opens every bucket (retrying within the
 * bootstrap budget) and returns the store.
 *
 * @example
 * ```ts
 * const store = await openKvStore({ nc, replicas: 3, bootstrapTimeoutMs: 120_000 });
 * ```
 */
export async function openKvStore(opts: KvStoreOptions): Promise<KvStore> {
  if (opts.replicas !== 1 && opts.replicas !== 3) {
    throw new InvalidInputError("replicas", "must be 1 or 3");
  }
  const opTimeoutMs = opts.opTimeoutMs ?? 2000;
  const started = Date.now();
  const buckets = await openBuckets({
    nc: opts.nc,
    replicas: opts.replicas,
    nonceMaxAgeMs: NONCE_MAX_AGE_MS,
    opTimeoutMs,
    bootstrapTimeoutMs: opts.bootstrapTimeoutMs ?? 120_000,
    log: opts.log,
  });
  const store = new KvStore(
    opts.nc,
    buckets,
    opts.ownsConnection === true,
    opts.log,
    opts.replicaReads,
    opTimeoutMs,
  );
  // Within the same bootstrap budget: on a cold cluster the buckets exist
  // before their stream leaders do, and reads time out until then.
  const deadline = started + (opts.bootstrapTimeoutMs ?? 120_000);
  for (let attempt = 1;; attempt++) {
    try {
      await store.backfillQuotaHints();
      return store;
    } catch (err) {
      if (!(err instanceof StoreUnavailableError) || Date.now() >= deadline) {
        await store.close();
        throw err;
      }
      if (attempt % 5 === 1) {
        opts.log?.info("waiting for the control-plane buckets to answer", { error: err.message });
      }
      await new Promise((r) => setTimeout(r, Math.min(1000, Math.max(0, deadline - Date.now()))));
    }
  }
}

/**
 * {@linkcode Store} on JetStream KV. Open it with {@linkcode openKvStore}.
 *
 * @example
 * ```ts
 * const store = await openKvStore({ nc, replicas: 1 });
 * await store.addUser({ signPub, kexPub: null, kexSig: null, handle: "ada", role: "admin" });
 * ```
 */
export class KvStore implements Store {
  readonly kind = "kv" as const;
  #nc: NatsConnection;
  /** The buckets' reads and writes, confirmed reads among them (kv_access.ts). */
  #a: KvAccess;
  #owns: boolean;
  #log?: Logger;
  #watches = new Set<StoreWatch>();
  /** Rooms, members and the change log (kv_rooms.ts). */
  #rooms: KvRooms;

  /** Use {@linkcode openKvStore}. */
  constructor(
    nc: NatsConnection,
    buckets: Buckets,
    ownsConnection: boolean,
    log?: Logger,
    replicaReads: () => boolean | Promise<boolean> = () => false,
    opTimeoutMs = 2000,
  ) {
    this.#nc = nc;
    this.#a = new KvAccess(nc, buckets, { log, replicaReads, opTimeoutMs });
    this.#rooms = new KvRooms(this.#a, log);
    this.#owns = ownsConnection;
    this.#log = log;
  }

  /**
   * Writes the quota hints (invariant 5) of rooms and blobs stored before
   * they existed, once per store (kv_rooms.ts).
   *
   * @example
   * ```ts
   * await store.backfillQuotaHints(); // openKvStore does this
   * ```
   */
  backfillQuotaHints(): Promise<void> {
    return this.#rooms.backfillQuotaHints();
  }

  // ---- users ----

  async addUser(user: NewUser): Promise<User> {
    const row = newUserRow(user);
    if (await this.#a.create(this.#a.kv.users, row.signPub, row) === false) {
      throw new UserExistsError(row.signPub);
    }
    return row;
  }

  async getUser(signPub: string): Promise<User | null> {
    check.signPub("signPub", signPub);
    return (await this.#a.get<User>(this.#a.kv.users, signPub))?.value ?? null;
  }

  async listUsers(): Promise<User[]> {
    const keys = await this.#a.keys(this.#a.kv.users, ">");
    const users = (await Promise.all(keys.map((k) => this.#a.get<User>(this.#a.kv.users, k))))
      .filter((u) => u !== null).map((u) => u.value);
    return users.sort((a, b) =>
      a.createdAt - b.createdAt || cmp(a.handle, b.handle) || cmp(a.signPub, b.signPub)
    );
  }

  async revokeUser(signPub: string): Promise<void> {
    check.signPub("signPub", signPub);
    await this.#a.cas<User, void>(this.#a.kv.users, signPub, (u) => {
      if (u === null) throw new NotFoundError("user", signPub);
      if (u.status === "revoked") return { done: undefined };
      return { write: { ...u, status: "revoked" }, result: undefined };
    });
  }

  async setUserMaxConnections(signPub: string, max: number | null): Promise<void> {
    check.signPub("signPub", signPub);
    if (max !== null) check.maxConnections("max", max);
    await this.#a.cas<User, void>(this.#a.kv.users, signPub, (u) => {
      if (u === null) throw new NotFoundError("user", signPub);
      const { maxConnections: had, ...rest } = u;
      if ((had ?? null) === max) return { done: undefined };
      return { write: max === null ? rest : { ...rest, maxConnections: max }, result: undefined };
    });
  }

  async setUserKex(signPub: string, kexPub: string, kexSig: string): Promise<void> {
    check.signPub("signPub", signPub);
    check.kexPub("kexPub", kexPub);
    check.hex("kexSig", kexSig);
    await this.#a.cas<User, void>(this.#a.kv.users, signPub, (u) => {
      if (u === null) throw new NotFoundError("user", signPub);
      if (u.kexPub === kexPub && u.kexSig === kexSig) return { done: undefined };
      if (u.kexPub !== null) {
        throw new ConflictError(`user ${signPub} already has a different key-exchange key`);
      }
      return { write: { ...u, kexPub, kexSig }, result: undefined };
    });
  }

  // ---- rooms, members, the change log: kv_rooms.ts ----

  createRoom(room: NewRoom, genesis?: RoomGenesis): Promise<Room> {
    return this.#rooms.createRoom(room, genesis);
  }

  getRoom(id: string): Promise<Room | null> {
    return this.#rooms.getRoom(id);
  }

  getRoomBySubject(subject: string): Promise<Room | null> {
    return this.#rooms.getRoomBySubject(subject);
  }

  listRoomsForMember(signPub: string): Promise<Room[]> {
    return this.#rooms.listRoomsForMember(signPub);
  }

  getUserAccess(signPub: string): Promise<UserAccess> {
    return this.#rooms.getUserAccess(signPub);
  }

  countRoomsCreatedBy(signPub: string): Promise<RoomCounts> {
    return this.#rooms.countRoomsCreatedBy(signPub);
  }

  setRoomEpoch(id: string, expectedEpoch: number, newEpoch: number): Promise<void> {
    return this.#rooms.setRoomEpoch(id, expectedEpoch, newEpoch);
  }

  deleteRoom(id: string): Promise<void> {
    return this.#rooms.deleteRoom(id);
  }

  applyRoomChange(
    roomId: string,
    seq: number,
    change: { text: string; sig: string },
    after: RoomStateAfter,
  ): Promise<void> {
    return this.#rooms.applyRoomChange(roomId, seq, change, after);
  }

  listRoomChanges(roomId: string): Promise<RoomChange[]> {
    return this.#rooms.listRoomChanges(roomId);
  }

  addMember(member: NewMember): Promise<Member> {
    return this.#rooms.addMember(member);
  }

  removeMember(roomId: string, signPub: string): Promise<void> {
    return this.#rooms.removeMember(roomId, signPub);
  }

  listMembers(roomId: string): Promise<Member[]> {
    return this.#rooms.listMembers(roomId);
  }

  getMember(roomId: string, signPub: string): Promise<Member | null> {
    return this.#rooms.getMember(roomId, signPub);
  }

  // ---- sealed keys ----

  async putSealedKeys(roomId: string, epoch: number, keys: NewSealedKey[]): Promise<SealedKey[]> {
    const rows = sealedKeyRows(roomId, epoch, keys);
    const r = await this.#rooms.room(roomId);
    if (r === null) throw new NotFoundError("room", roomId);
    const prefix = roomPrefix(r.value);
    const written: Array<[string, number]> = [];
    for (const row of rows) {
      const key = `${prefix}.${row.recipient}.${epoch}`;
      const rev = await this.#a.create(this.#a.kv.roomKeys, key, row);
      if (rev === false) {
        // The same key stored by an earlier try of this very request (whose
        // outcome its sender could not know) is this key: go on.
        const stored = await this.#a.get<SealedKey>(this.#a.kv.roomKeys, key);
        if (
          stored && stored.value.sealed === row.sealed && stored.value.sealedBy === row.sealedBy
        ) {
          continue;
        }
        // All or nothing: take back only what this call wrote.
        for (const [k, v] of written) {
          await this.#a.delete(this.#a.kv.roomKeys, k, v).catch(() => {});
        }
        throw new KeyExistsError(roomId, epoch, row.recipient);
      }
      written.push([key, rev]);
    }
    return rows;
  }

  async getSealedKey(roomId: string, epoch: number, recipient: string): Promise<SealedKey | null> {
    check.id("roomId", roomId);
    check.count("epoch", epoch);
    check.signPub("recipient", recipient);
    const r = await this.#rooms.room(roomId);
    if (r === null) return null;
    const key = `${roomPrefix(r.value)}.${recipient}.${epoch}`;
    return (await this.#a.get<SealedKey>(this.#a.kv.roomKeys, key))?.value ?? null;
  }

  async listSealedKeysFor(roomId: string, recipient: string): Promise<SealedKey[]> {
    check.id("roomId", roomId);
    check.signPub("recipient", recipient);
    const r = await this.#rooms.room(roomId);
    if (r === null) return [];
    const keys = await this.#a.keys(this.#a.kv.roomKeys, `${roomPrefix(r.value)}.${recipient}.*`);
    const rows = await Promise.all(keys.map((k) => this.#a.get<SealedKey>(this.#a.kv.roomKeys, k)));
    return rows.filter((x) => x !== null).map((x) => x.value).sort((a, b) => a.epoch - b.epoch);
  }

  /** Every sealed key of a room, by epoch then recipient; empty if the room is absent. */
  async listSealedKeys(roomId: string): Promise<SealedKey[]> {
    check.id("roomId", roomId);
    const r = await this.#rooms.room(roomId);
    if (r === null) return [];
    const keys = await this.#a.keys(this.#a.kv.roomKeys, `${roomPrefix(r.value)}.*.*`);
    const rows = await Promise.all(keys.map((k) => this.#a.get<SealedKey>(this.#a.kv.roomKeys, k)));
    return rows.filter((x) => x !== null).map((x) => x.value)
      .sort((a, b) => a.epoch - b.epoch || cmp(a.recipient, b.recipient));
  }

  // ---- nonces ----

  async rememberNonce(
    nonce: string,
    expiresAt: number,
    now: number = Date.now(),
  ): Promise<boolean> {
    validateNonce(nonce, expiresAt, now);
    // The bucket forgets a nonce after NONCE_MAX_AGE_MS whatever its expiry:
    // a longer-lived one would be forgotten while still live, and replayable.
    if (expiresAt - now > NONCE_MAX_AGE_MS) {
      throw new InvalidInputError(
        "expiresAt",
        `must be at most ${NONCE_MAX_AGE_MS} ms ahead (the nonce bucket's max age)`,
      );
    }
    const key = b64url(nonce);
    // A KV create: of two nodes seeing one nonce at once, exactly one wins.
    const fresh = await this.#a.cas<{ expiresAt: number }, boolean>(
      this.#a.kv.nonces,
      key,
      (cur) => {
        if (cur !== null && cur.expiresAt > now) return { done: false };
        return { write: { expiresAt }, result: true };
      },
    );
    // Invariant 6: the pruning hint of an accepted nonce; a plain put, as
    // the same nonce reused after its expiry may land in the same slot.
    if (fresh) {
      // Only a hint (invariant 6): the nonce is remembered either way.
      await this.#rooms.afterCommit("nonce expiry hint", {}, () =>
        this.#a.write(
          "remember nonce expiry",
          () => this.#a.kv.nonces.put(nonceExpiryKey(expiresAt, key), encode({ expiresAt })),
        ));
    }
    return fresh;
  }

  async pruneNonces(now: number): Promise<number> {
    check.count("now", now);
    // The bucket's max age does the real expiry; this removes what expired
    // before that, so the count matches the SQLite store's. Invariant 6: it
    // lists only the slots that can hold expired nonces: up to now's slot,
    // back to where the max age has already forgotten everything.
    const kv = this.#a.kv.nonces;
    const last = Math.floor(now / NONCE_SLOT_MS);
    const first = Math.max(0, last - Math.ceil(NONCE_MAX_AGE_MS / NONCE_SLOT_MS) - 1);
    const slots = Array.from({ length: last - first + 1 }, (_, i) => `exp.${first + i}.*`);
    let removed = 0;
    for (const k of await this.#a.keys(kv, slots)) {
      const hint = await this.#a.get<{ expiresAt: number }>(kv, k);
      if (hint === null || hint.value.expiresAt > now) continue;
      const key = k.split(".")[2];
      const cur = await this.#a.get<{ expiresAt: number }>(kv, key);
      // Deleted only if still expired at the revision read: a reuse that
      // raced in keeps its nonce.
      if (cur && cur.value.expiresAt <= now && await this.#a.delete(kv, key, cur.revision)) {
        removed++;
      }
      await this.#a.delete(kv, k, hint.revision);
    }
    return removed;
  }

  // ---- blobs ----

  async putBlob(blob: NewBlob): Promise<BlobMeta> {
    validateNewBlob(blob);
    const kv = this.#a.kv;
    const r = await this.#rooms.room(blob.roomId);
    if (r === null) throw new NotFoundError("room", blob.roomId);
    const id = tok(blob.id);
    if (await this.#a.get(kv.blobMeta, id)) throw new BlobExistsError(blob.id);
    const rec: BlobRecord = {
      roomId: blob.roomId,
      inc: r.value.inc,
      owner: blob.owner,
      size: blob.data.byteLength,
      createdAt: blob.createdAt ?? Date.now(),
      object: `${id}.${newIncarnation()}`,
    };
    // Bytes under a unique name first (unreferenced, so invisible), then the
    // room index (so deleteRoom finds it), then the metadata: the commit.
    await definitely(async () => {
      await this.#a.io("put blob", () => this.#a.blobs.putBlob({ name: rec.object }, blob.data));
      await this.#a.create(kv.blobMeta, blobRoomKey(blob.id, rec), {});
      await this.#a.create(kv.blobMeta, ownerKey(rec), {}); // invariant 5: before the commit
    });
    if (await this.#a.create(kv.blobMeta, id, rec) === false) {
      await this.#a.delete(kv.blobMeta, ownerKey(rec)).catch(() => {});
      await this.#a.deleteObject(rec.object);
      throw new BlobExistsError(blob.id);
    }
    return metaOf(blob.id, rec);
  }

  /**
   * The blob record, if its room is still the incarnation it was put in;
   * `rooms` shares the room reads of one count.
   */
  async #blob(
    id: string,
    rooms?: Map<string, Promise<RoomRead | null>>,
  ): Promise<{ value: BlobRecord; revision: number } | null> {
    check.id("id", id);
    const rec = await this.#a.get<BlobRecord>(this.#a.kv.blobMeta, tok(id));
    if (rec === null) return null;
    const room = rooms?.get(rec.value.roomId) ?? this.#rooms.room(rec.value.roomId);
    rooms?.set(rec.value.roomId, room);
    const r = await room;
    return r && r.value.inc === rec.value.inc ? rec : null;
  }

  async getBlob(id: string): Promise<Blob | null> {
    const rec = await this.#blob(id);
    if (rec === null) return null;
    const data = await this.#a.io("get blob", () => this.#a.readObject(rec.value.object));
    return data ? { ...metaOf(id, rec.value), data } : null;
  }

  async getBlobMeta(id: string): Promise<BlobMeta | null> {
    const rec = await this.#blob(id);
    return rec ? metaOf(id, rec.value) : null;
  }

  async deleteBlob(id: string): Promise<void> {
    check.id("id", id);
    const kv = this.#a.kv;
    const rec = await this.#a.get<BlobRecord>(kv.blobMeta, tok(id));
    if (rec === null || !await this.#a.delete(kv.blobMeta, tok(id), rec.revision)) {
      throw new NotFoundError("blob", id);
    }
    await this.#rooms.afterCommit("blob deletion's cleanup", { blob: id }, async () => {
      await this.#a.delete(kv.blobMeta, ownerKey(rec.value));
      await this.#a.deleteObject(rec.value.object);
      await this.#a.delete(kv.blobMeta, blobRoomKey(id, rec.value));
    });
  }

  /** The id of every visible blob, sorted: backups and copies list them all. */
  async listBlobIds(): Promise<string[]> {
    // Blob records are the single-token keys (ids with '.' are encoded).
    const keys = await this.#a.keys(this.#a.kv.blobMeta, "*");
    const rooms = new Map<string, Promise<RoomRead | null>>();
    const ids = await Promise.all(keys.map(async (k) => {
      const id = untok(k);
      return await this.#blob(id, rooms) ? id : null;
    }));
    return ids.filter((id) => id !== null).sort(cmp);
  }

  async blobUsageOf(owner: string): Promise<BlobUsage> {
    check.signPub("owner", owner);
    // Invariant 5: the owner's own hints, each checked against its blob.
    const prefix = `owner.${owner}.`;
    const keys = await this.#a.keys(this.#a.kv.blobMeta, `${prefix}*.*`);
    // An upload's quota check reads every blob of its owner (up to the
    // blobs-per-user quota), mostly in a few rooms: each room is read once.
    const rooms = new Map<string, Promise<RoomRead | null>>();
    const blobs = await Promise.all(keys.map(async (k) => {
      const object = k.slice(prefix.length);
      const rec = await this.#blob(untok(object.split(".")[0]), rooms);
      return rec && rec.value.object === object && rec.value.owner === owner ? rec.value : null;
    }));
    const usage: BlobUsage = { count: 0, bytes: 0 };
    for (const b of blobs) {
      if (b === null) continue;
      usage.count++;
      usage.bytes += b.size;
    }
    return usage;
  }

  // ---- change feed ----

  watchChanges(onChange: (change: StoreChange) => void): StoreWatch {
    const kv = this.#a.kv;
    let running = true;
    const iters: Array<{ stop(): void }> = [];
    const started: Promise<void>[] = [];
    const watchOne = async (bucket: KV, map: (key: string) => StoreChange | null) => {
      const first = Promise.withResolvers<void>();
      started.push(first.promise);
      // A watcher that ends (connection lost, consumer gone) is re-created;
      // what changed meanwhile is unknown, so the consumer re-reads all.
      for (let restarts = 0; running; restarts++) {
        try {
          const it = await bucket.watch({ include: KvWatchInclude.UpdatesOnly });
          iters.push(it);
          first.resolve();
          if (restarts > 0) onChange({ kind: "all" });
          for await (const e of it) {
            if (!running) break;
            const change = map(e.key);
            if (change !== null) onChange(change);
          }
        } catch (err) {
          if (!running) break;
          if (restarts === 0) first.resolve(); // ready means "as ready as it gets"
          this.#log?.warn("KV watch interrupted; restarting", { error: err });
        }
        if (running) {
          onChange({ kind: "all" });
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    };
    const roomOf = (key: string): StoreChange | null => {
      const parts = key.split(".");
      // A quota hint grants nothing (invariant 5): no re-check for it.
      if (parts[0] === "creator") return null;
      return parts[0] === "id" && parts[1]
        ? { kind: "room", roomId: untok(parts[1]) }
        : { kind: "all" };
    };
    const done = Promise.all([
      watchOne(kv.users, (k) => ({ kind: "user", signPub: k })),
      watchOne(kv.roomsByMember, (k) => ({ kind: "user", signPub: k })),
      watchOne(kv.rooms, roomOf),
      watchOne(kv.members, (k) => ({ kind: "room", roomId: untok(k.split(".")[0]) })),
    ]);
    // Events missed while disconnected are not replayed: re-read everything.
    const status = (async () => {
      for await (const s of this.#nc.status()) {
        if (!running) break;
        if (s.type === "reconnect") onChange({ kind: "all" });
      }
    })();
    const w: StoreWatch = {
      ready: Promise.all(started).then(() => {}),
      stop: async () => {
        running = false;
        this.#watches.delete(w);
        for (const it of iters) it.stop();
        await done;
        void status;
      },
    };
    this.#watches.add(w);
    return w;
  }

  /** Every visible room, sorted by id. */
  listRooms(): Promise<Room[]> {
    return this.#rooms.listRooms();
  }

  /**
   * Each control-plane stream's last sequence, the nonces' aside (they change
   * with every signed request and are not copied): two equal answers mean
   * nothing the copies read was written in between.
   *
   * @example
   * ```ts
   * const before = await store.writeMarks();
   * // … read everything …
   * const unchanged = JSON.stringify(await store.writeMarks()) === JSON.stringify(before);
   * ```
   */
  writeMarks(): Promise<Record<string, number>> {
    return this.#a.lastSequences(["nonces"]);
  }

  /**
   * The users bucket's replication state: leader and current followers.
   *
   * @example
   * ```ts
   * const r = await store.replicationState();
   * console.log(r.replicas === 1 ? "R1, not replicated" : `${r.current}/${r.followers}`);
   * ```
   */
  async replicationState(): Promise<ReplicationState> {
    const st = await this.#a.io("status", () => this.#a.kv.users.status());
    const info = st.streamInfo;
    const followers = info.cluster?.replicas ?? [];
    return {
      replicas: info.config.num_replicas,
      leader: info.cluster?.leader ?? null,
      current: followers.filter((f) => f.current).length,
      followers: followers.length,
      messages: info.state.messages,
    };
  }

  async close(): Promise<void> {
    for (const w of [...this.#watches]) await w.stop();
    this.#a.close();
    if (this.#owns) await this.#nc.close().catch(() => {});
  }
}
