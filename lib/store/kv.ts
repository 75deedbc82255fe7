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
import {
  b64url,
  type BlobRecord,
  blobRoomKey,
  cmp,
  creatorKey,
  definitely,
  encode,
  live,
  MAX_CAS_ATTEMPTS,
  type MemberRecord,
  mergeMembers,
  message,
  metaOf,
  newIncarnation,
  NONCE_SLOT_MS,
  nonceExpiryKey,
  ownerKey,
  publicRoom,
  QUOTA_HINTS_MARKER,
  roomKey,
  roomPrefix,
  type RoomRead,
  type RoomRecord,
  same,
  type SubjectClaim,
  subjectKey,
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
  DamagedRecordError,
  InvalidInputError,
  KeyExistsError,
  type Member,
  MemberExistsError,
  memberRow,
  type NewBlob,
  type NewMember,
  type NewRoom,
  newRoomRow,
  type NewSealedKey,
  type NewUser,
  newUserRow,
  NotFoundError,
  type Room,
  type RoomChange,
  type RoomCounts,
  RoomExistsError,
  type RoomGenesis,
  type RoomStateAfter,
  type SealedKey,
  sealedKeyRows,
  type Store,
  type StoreChange,
  StoreError,
  StoreOutcomeUnknownError,
  StoreUnavailableError,
  type StoreWatch,
  type User,
  type UserAccess,
  UserExistsError,
  validateAppliedChange,
  validateEpochMove,
  validateGenesis,
  validateNewBlob,
  validateNewMember,
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
    this.#owns = ownsConnection;
    this.#log = log;
  }

  /**
   * Writes the quota hints (invariant 5) of rooms and blobs stored before
   * they existed, once per store: without them a count would miss those
   * records and let their owner past a quota. Idempotent (creates only), so
   * nodes opening the store at once may all run it.
   *
   * @example
   * ```ts
   * await store.backfillQuotaHints(); // openKvStore does this
   * ```
   */
  async backfillQuotaHints(): Promise<void> {
    const kv = this.#a.kv;
    if (await this.#a.get(kv.blobMeta, QUOTA_HINTS_MARKER)) return;
    let rooms = 0;
    let blobs = 0;
    for (const k of await this.#a.keys(kv.rooms, "id.*")) {
      const r = await this.#a.get<RoomRecord>(kv.rooms, k);
      const key = r && creatorKey(r.value);
      if (key && await this.#a.create(kv.rooms, key, {}) !== false) rooms++;
    }
    // Blob records are the single-token keys (ids with '.' are encoded).
    for (const k of await this.#a.keys(kv.blobMeta, "*")) {
      const b = await this.#a.get<BlobRecord>(kv.blobMeta, k);
      if (b && await this.#a.create(kv.blobMeta, ownerKey(b.value), {}) !== false) blobs++;
    }
    await this.#a.create(kv.blobMeta, QUOTA_HINTS_MARKER, { version: 1 });
    if (rooms + blobs > 0) this.#log?.info("quota hints written", { rooms, blobs });
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

  // ---- rooms ----

  /**
   * The visible room record (invariant 1), with its revision. `current`: the
   * id record is read linearizably (admission, see `#roomsForMember`).
   */
  async #room(id: string, current = false): Promise<RoomRead | null> {
    const rec = current
      ? await this.#a.getCurrent<RoomRecord>(this.#a.kv.rooms, roomKey(id))
      : await this.#a.get<RoomRecord>(this.#a.kv.rooms, roomKey(id));
    if (rec === null) return null;
    const claim = await this.#a.get<SubjectClaim>(this.#a.kv.rooms, subjectKey(rec.value.subject));
    if (claim === null || claim.value.id !== id || claim.value.inc !== rec.value.inc) return null;
    return rec;
  }

  async createRoom(room: NewRoom, genesis?: RoomGenesis): Promise<Room> {
    const row = newRoomRow(room);
    if (genesis !== undefined) validateGenesis(room.id, genesis);
    const inc = newIncarnation();
    const rec: RoomRecord = { ...row, inc };
    const kv = this.#a.kv;
    const prefix = roomPrefix(rec);
    const now = Date.now();
    const members: MemberRecord = genesis
      ? {
        seq: 0,
        change: { text: genesis.change.text, sig: genesis.change.sig },
        members: genesis.members.map((m) => memberRow(m, now)),
      }
      : { seq: -1, change: null, members: [] };

    const creator = creatorKey(rec);
    const abandon = async () => {
      await this.#a.delete(kv.rooms, creator).catch(() => {});
      await this.#a.delete(kv.members, prefix).catch(() => {});
      if (genesis) await this.#a.delete(kv.changes, `${prefix}.0`).catch(() => {});
      // Index entries are hints (invariant 3); dropping ours only saves a read.
      for (const m of members.members) await this.#indexRemove(m.signPub, row.id).catch(() => {});
    };
    const claimKey = subjectKey(row.subject);
    const idKey = roomKey(row.id);

    // Before the id record nothing of this incarnation is visible
    // (invariant 1): a step that fails, even one whose write may have landed,
    // leaves the room not created, and its leftovers are taken back.
    try {
      await definitely(async () => {
        // Children first, under an incarnation nobody reads yet.
        await this.#a.create(kv.members, prefix, members);
        if (genesis) await this.#a.create(kv.changes, `${prefix}.0`, genesis.change);
        for (const m of members.members) await this.#indexAdd(m.signPub, row.id);
        // Invariant 5: the creator's quota hint before the room can be visible.
        await this.#a.create(kv.rooms, creator, {});
        if (!await this.#claim(claimKey, { id: row.id, inc }, row)) {
          throw new RoomExistsError(row.id, row.subject);
        }
      });
    } catch (err) {
      await abandon();
      throw err;
    }

    // The commit: the id record. From its write on, a failure may leave the
    // room created, so nothing of it is taken back on an unknown outcome:
    // abandoning the children of a visible room would leave it without
    // members, its subject claimed for good.
    let written: number | false;
    try {
      written = await this.#a.create(kv.rooms, idKey, rec);
      if (written === false) {
        // Taken, unless by a creation that lost its subject or never finished.
        const cur = await this.#a.get<RoomRecord>(kv.rooms, idKey);
        const visible = cur !== null && (await this.#room(row.id)) !== null;
        written = cur === null || visible
          ? false
          : await this.#a.update(kv.rooms, idKey, rec, cur.revision);
      }
    } catch (err) {
      if (!(err instanceof StoreOutcomeUnknownError)) await abandon();
      throw err;
    }
    if (written === false) {
      await this.#releaseClaim(claimKey, inc).catch(() => {});
      await abandon();
      throw new RoomExistsError(row.id, row.subject);
    }
    // A concurrent creation may have taken the subject over meanwhile. Not
    // knowing means not knowing whether the room is visible.
    let visibleInc: string | undefined;
    try {
      visibleInc = (await this.#room(row.id))?.value.inc;
    } catch (err) {
      throw new StoreOutcomeUnknownError(
        `room ${row.id} written, its visibility not confirmed: ${message(err)}`,
        { cause: err },
      );
    }
    if (visibleInc !== inc) {
      const mine = await this.#a.get<RoomRecord>(kv.rooms, idKey).catch(() => null);
      if (mine?.value.inc === inc) {
        await this.#a.delete(kv.rooms, idKey, mine.revision).catch(() => {});
      }
      await abandon();
      throw new RoomExistsError(row.id, row.subject);
    }
    return row;
  }

  /** Takes the subject claim: absent, or stale (its room is not visible). */
  async #claim(key: string, claim: SubjectClaim, row: Room): Promise<boolean> {
    const kv = this.#a.kv.rooms;
    if (await this.#a.create(kv, key, claim) !== false) return true;
    const cur = await this.#a.get<SubjectClaim>(kv, key);
    if (cur === null) return await this.#a.create(kv, key, claim) !== false;
    const holder = await this.#a.get<RoomRecord>(kv, roomKey(cur.value.id));
    if (
      holder !== null && holder.value.inc === cur.value.inc && holder.value.subject === row.subject
    ) {
      return false; // a live room, or one being created right now
    }
    return await this.#a.update(kv, key, claim, cur.revision) !== false;
  }

  async #releaseClaim(key: string, inc: string): Promise<void> {
    const cur = await this.#a.get<SubjectClaim>(this.#a.kv.rooms, key);
    if (cur?.value.inc === inc) await this.#a.delete(this.#a.kv.rooms, key, cur.revision);
  }

  async getRoom(id: string): Promise<Room | null> {
    check.id("id", id);
    const r = await this.#room(id);
    return r ? publicRoom(r.value) : null;
  }

  async getRoomBySubject(subject: string): Promise<Room | null> {
    check.subject("subject", subject);
    const claim = await this.#a.get<SubjectClaim>(this.#a.kv.rooms, subjectKey(subject));
    if (claim === null) return null;
    const r = await this.#room(claim.value.id);
    return r && r.value.subject === subject ? publicRoom(r.value) : null;
  }

  async listRoomsForMember(signPub: string): Promise<Room[]> {
    check.signPub("signPub", signPub);
    return await this.#roomsForMember(signPub, false);
  }

  /**
   * The rooms whose member set names `signPub`. `current`: every record that
   * grants one of them (the room's id record and its member set) is read
   * linearizably (`#startCurrent`), so a room removed or a
   * member removed before the call began is never in the answer. The rest
   * only ever takes access away when it is old, so it is read plainly: the
   * member index is a hint (invariant 3: an old one misses a room joined
   * just now, or costs a read), and the subject claim can only stop
   * agreeing with an id record that is still current while that room is
   * being created (invariant 1).
   */
  async #roomsForMember(signPub: string, current: boolean): Promise<Room[]> {
    const index = await this.#a.get<string[]>(this.#a.kv.roomsByMember, signPub);
    if (index === null) return [];
    // The user's own index: damaged, it cannot say where to look (fails closed for this user only).
    if (!Array.isArray(index.value) || !index.value.every((id) => typeof id === "string")) {
      throw this.#a.damaged(
        this.#a.kv.roomsByMember,
        signPub,
        "the member index is not a list of ids",
      );
    }
    // Invariant 3: the index only says where to look; the member set decides.
    // A room whose records are damaged is left out (logged by #damaged), so
    // it locks its members out of that room only, not out of the others.
    const rooms = await Promise.all(index.value.map(async (id) => {
      try {
        if (current) return await this.#grantingRoomCurrent(id, signPub);
        const r = await this.#room(id);
        if (r === null) return null;
        const ms = await this.#members(r.value);
        return this.#grants(id, ms, signPub) ? publicRoom(r.value) : null;
      } catch (err) {
        if (err instanceof DamagedRecordError) return null;
        throw err;
      }
    }));
    return rooms.filter((r) => r !== null).sort((a, b) => cmp(a.id, b.id));
  }

  /**
   * Room `id` if it is visible and its member set names `signPub`, its id
   * record and member set read linearizably. The member set's key depends on
   * the id record (its incarnation): it is read, and its revision checked,
   * from the id record's guess, alongside the id record's own check, so a
   * login waits for one revision check per room rather than two in a row;
   * when the id record's check does not confirm the guess, both are read
   * again, one after the other.
   */
  async #grantingRoomCurrent(id: string, signPub: string): Promise<Room | null> {
    const rec = this.#a.startCurrent(this.#a.kv.rooms, roomKey(id));
    const guess = await rec.guess;
    let guessed: RoomRecord | null = null;
    try {
      guessed = this.#a.parse<RoomRecord>(this.#a.kv.rooms, roomKey(id), guess)?.value ?? null;
    } catch { /* damaged: read again below, confirmed */ }
    const ms = guessed && this.#a.startCurrent(this.#a.kv.members, roomPrefix(guessed));
    ms?.confirmed.catch(() => {});
    const claim = guessed &&
      this.#a.get<SubjectClaim>(this.#a.kv.rooms, subjectKey(guessed.subject));
    claim?.catch(() => {});
    const confirmed = await rec.confirmed;
    if (!live(confirmed)) return null;
    if (guessed === null || confirmed.revision !== guess!.revision) {
      const r = await this.#room(id, true);
      if (r === null) return null;
      const members = await this.#a.getCurrent<MemberRecord>(
        this.#a.kv.members,
        roomPrefix(r.value),
      );
      return this.#grants(id, members, signPub) ? publicRoom(r.value) : null;
    }
    const c = await claim!;
    if (c === null || c.value.id !== id || c.value.inc !== guessed.inc) return null;
    const members = this.#a.parse<MemberRecord>(
      this.#a.kv.members,
      roomPrefix(guessed),
      await ms!.confirmed,
    );
    return this.#grants(id, members, signPub) ? publicRoom(guessed) : null;
  }

  /** Whether room `id`'s member set names `signPub`; a set that is not a list is damaged. */
  #grants(id: string, ms: { value: MemberRecord } | null, signPub: string): boolean {
    if (ms !== null && !Array.isArray(ms.value.members)) {
      throw this.#a.damaged(this.#a.kv.members, id, "members is not a list");
    }
    return ms?.value.members.some((m) => m?.signPub === signPub) === true;
  }

  /**
   * Linearizable, as the contract asks: the user and every room record that
   * grants access are read at a revision the bucket's RAFT group confirmed
   * after the call began (`#startCurrent`), so no login is
   * admitted after a revoke or a room removal returned, on any node,
   * whatever the cluster is doing; with no leader to confirm, it throws and
   * the login fails closed. No cache: whether another node committed a
   * revocation since can only be learned from the log. The user and the
   * rooms are read at once: a login waits for the longer of the two.
   */
  async getUserAccess(signPub: string): Promise<UserAccess> {
    check.signPub("signPub", signPub);
    const [user, rooms] = await Promise.all([
      this.#a.getCurrent<User>(this.#a.kv.users, signPub),
      this.#roomsForMember(signPub, true),
    ]);
    return { user: user?.value ?? null, rooms };
  }

  async countRoomsCreatedBy(signPub: string): Promise<RoomCounts> {
    check.signPub("signPub", signPub);
    // Invariant 5: the creator's own hints, each checked against the room.
    const prefix = `creator.${signPub}.`;
    const keys = await this.#a.keys(this.#a.kv.rooms, `${prefix}*.*`);
    const rooms = await Promise.all(keys.map(async (k) => {
      const [idTok, inc] = k.slice(prefix.length).split(".");
      // The listing includes deleted hints (see #keys): only a live one counts.
      const [hint, r] = await Promise.all([
        this.#a.get(this.#a.kv.rooms, k),
        this.#room(untok(idTok)),
      ]);
      return hint && r && r.value.inc === inc && r.value.createdBy === signPub ? r.value : null;
    }));
    const counts: RoomCounts = { rooms: 0, persisted: 0 };
    for (const r of rooms) {
      if (r === null) continue;
      counts.rooms++;
      if (r.policy.persist) counts.persisted++;
    }
    return counts;
  }

  async setRoomEpoch(id: string, expectedEpoch: number, newEpoch: number): Promise<void> {
    validateEpochMove(id, expectedEpoch, newEpoch);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const r = await this.#room(id);
      if (r === null) throw new NotFoundError("room", id);
      if (r.value.epoch !== expectedEpoch) {
        throw new ConflictError(`room ${id} epoch is ${r.value.epoch}, expected ${expectedEpoch}`);
      }
      const next = { ...r.value, epoch: newEpoch };
      if (await this.#a.update(this.#a.kv.rooms, roomKey(id), next, r.revision) !== false) return;
    }
    throw new StoreUnavailableError(`too much contention on room ${id}`);
  }

  async #raiseEpoch(id: string, inc: string, epoch: number): Promise<void> {
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const r = await this.#room(id);
      if (r === null || r.value.inc !== inc || r.value.epoch >= epoch) return;
      const next = { ...r.value, epoch };
      if (await this.#a.update(this.#a.kv.rooms, roomKey(id), next, r.revision) !== false) return;
    }
  }

  async deleteRoom(id: string): Promise<void> {
    check.id("id", id);
    const kv = this.#a.kv;
    const r = await this.#room(id);
    if (r === null) throw new NotFoundError("room", id);
    const { inc, subject } = r.value;
    // Invariant 2: the id record first; from here nothing of it is readable.
    if (!await this.#a.delete(kv.rooms, roomKey(id), r.revision)) {
      throw new ConflictError(`room ${id} changed while being deleted; retry`);
    }
    // Committed: the rest only reclaims what the old incarnation left.
    await this.#afterCommit("room deletion's cleanup", { room: id, inc }, async () => {
      await this.#releaseClaim(subjectKey(subject), inc);
      await this.#a.delete(kv.rooms, creatorKey(r.value));
      const prefix = roomPrefix(r.value);
      const ms = await this.#a.get<MemberRecord>(kv.members, prefix);
      await this.#a.delete(kv.members, prefix);
      for (const m of ms?.value.members ?? []) await this.#indexRemove(m.signPub, id);
      for (const k of await this.#a.keys(kv.changes, `${prefix}.*`)) {
        await this.#a.delete(kv.changes, k);
      }
      for (const k of await this.#a.keys(kv.roomKeys, `${prefix}.>`)) {
        await this.#a.delete(kv.roomKeys, k);
      }
      for (const k of await this.#a.keys(kv.blobMeta, `room.${prefix}.*`)) {
        const blobId = untok(k.split(".").pop()!);
        const meta = await this.#a.get<BlobRecord>(kv.blobMeta, tok(blobId));
        if (meta && meta.value.roomId === id && meta.value.inc === inc) {
          await this.#a.delete(kv.blobMeta, tok(blobId), meta.revision);
          await this.#a.delete(kv.blobMeta, ownerKey(meta.value));
          await this.#a.deleteObject(meta.value.object);
        }
        await this.#a.delete(kv.blobMeta, k);
      }
    });
  }

  /**
   * Runs the steps after an operation's commit point. The operation has
   * happened, so their failure is not its failure: reporting it would tell
   * the client a committed write failed, and its retry would then conflict
   * with that write. Each step only tidies what the invariants above already
   * allow a crash to leave (invisible records of an old incarnation, stale
   * hints, a change log key the member set restores); a failure is logged
   * with what it left, and the operation succeeds.
   */
  async #afterCommit(
    step: string,
    fields: Record<string, unknown>,
    steps: () => Promise<unknown>,
  ): Promise<void> {
    try {
      await steps();
    } catch (err) {
      if (!(err instanceof StoreError)) throw err;
      this.#log?.warn("committed; a follow-up step failed and left invisible leftovers", {
        step,
        ...fields,
        error: err,
      });
    }
  }

  // ---- the rooms_by_member hint (invariant 3) ----

  async #indexAdd(signPub: string, roomId: string): Promise<void> {
    await this.#a.cas<string[], void>(this.#a.kv.roomsByMember, signPub, (ids) => {
      if (ids?.includes(roomId)) return { done: undefined };
      return { write: [...(ids ?? []), roomId].sort(), result: undefined };
    });
  }

  async #indexRemove(signPub: string, roomId: string): Promise<void> {
    await this.#a.cas<string[], void>(this.#a.kv.roomsByMember, signPub, (ids) => {
      if (!ids?.includes(roomId)) return { done: undefined };
      return { write: ids.filter((x) => x !== roomId), result: undefined };
    });
  }

  // ---- members and the change log ----

  async #members(room: RoomRecord): Promise<{ value: MemberRecord; revision: number } | null> {
    return await this.#a.get<MemberRecord>(this.#a.kv.members, roomPrefix(room));
  }

  /**
   * Rewrites a visible room's member set at its revision: index entries for
   * added members before, for removed ones after (invariant 3).
   */
  async #writeMembers(
    room: RoomRecord,
    cur: { value: MemberRecord; revision: number },
    next: MemberRecord,
  ): Promise<boolean> {
    const before = new Set(cur.value.members.map((m) => m.signPub));
    const after = new Set(next.members.map((m) => m.signPub));
    await definitely(async () => {
      for (const s of after) if (!before.has(s)) await this.#indexAdd(s, room.id);
    });
    // The commit (invariant 4).
    if (await this.#a.update(this.#a.kv.members, roomPrefix(room), next, cur.revision) === false) {
      return false;
    }
    await this.#afterCommit("index removal", { room: room.id }, async () => {
      for (const s of before) if (!after.has(s)) await this.#indexRemove(s, room.id);
    });
    return true;
  }

  async applyRoomChange(
    roomId: string,
    seq: number,
    change: { text: string; sig: string },
    after: RoomStateAfter,
  ): Promise<void> {
    validateAppliedChange(roomId, seq, change, after);
    const kv = this.#a.kv;
    const now = Date.now();
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const r = await this.#room(roomId);
      if (r === null) throw new NotFoundError("room", roomId);
      const cur = await this.#members(r.value);
      if (cur === null) throw new NotFoundError("room", roomId);
      const prefix = roomPrefix(r.value);
      const head = cur.value.seq;
      if (seq < head) {
        // An older change: never touches the newer member set (invariant 4).
        const stored = await this.#a.get<{ text: string; sig: string }>(
          kv.changes,
          `${prefix}.${seq}`,
        );
        if (stored && same(stored.value, change)) return;
        throw new ConflictError(`room ${roomId} already has change ${seq}`);
      }
      if (seq === head && !(cur.value.change && same(cur.value.change, change))) {
        throw new ConflictError(`room ${roomId} already has change ${seq}`);
      }
      if (seq > head + 1) {
        throw new ConflictError(`room ${roomId} change ${seq} does not follow its newest change`);
      }
      // Restore the previous change's log key if its writer stopped short.
      if (head >= 0 && seq === head + 1 && cur.value.change) {
        const previous = cur.value.change;
        await definitely(() => this.#a.create(kv.changes, `${prefix}.${head}`, previous));
      }
      const next: MemberRecord = {
        seq,
        change: { text: change.text, sig: change.sig },
        members: mergeMembers(cur.value.members, after.members, now),
      };
      if (!await this.#writeMembers(r.value, cur, next)) continue;
      // Invariant 4: the member set holds the change; its log key and the
      // room's epoch follow (the next change, or a retry, completes them).
      await this.#afterCommit("change log and epoch", { room: roomId, seq }, async () => {
        await this.#a.create(kv.changes, `${prefix}.${seq}`, next.change);
        await this.#raiseEpoch(roomId, r.value.inc, after.epoch);
      });
      return;
    }
    throw new StoreUnavailableError(`too much contention on room ${roomId}`);
  }

  async listRoomChanges(roomId: string): Promise<RoomChange[]> {
    check.id("roomId", roomId);
    const r = await this.#room(roomId);
    if (r === null) return [];
    const prefix = roomPrefix(r.value);
    const [keys, ms] = await Promise.all([
      this.#a.keys(this.#a.kv.changes, `${prefix}.*`),
      this.#members(r.value),
    ]);
    const changes = (await Promise.all(keys.map(async (k) => {
      const c = await this.#a.get<{ text: string; sig: string }>(this.#a.kv.changes, k);
      return c
        ? { seq: Number(k.slice(prefix.length + 1)), text: c.value.text, sig: c.value.sig }
        : null;
    }))).filter((c) => c !== null);
    // Invariant 4: the newest change may exist only in the member set.
    const head = ms?.value;
    if (head?.change && !changes.some((c) => c.seq === head.seq)) {
      changes.push({ seq: head.seq, ...head.change });
    }
    return changes.sort((a, b) => a.seq - b.seq);
  }

  async addMember(member: NewMember): Promise<Member> {
    validateNewMember(member);
    const row = memberRow(member, Date.now());
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const r = await this.#room(member.roomId);
      const cur = r && await this.#members(r.value);
      if (!r || !cur) throw new NotFoundError("room", member.roomId);
      if (cur.value.members.some((m) => m.signPub === member.signPub)) {
        throw new MemberExistsError(member.roomId, member.signPub);
      }
      const next = { ...cur.value, members: [...cur.value.members, row] };
      if (await this.#writeMembers(r.value, cur, next)) return { roomId: member.roomId, ...row };
    }
    throw new StoreUnavailableError(`too much contention on room ${member.roomId}`);
  }

  async removeMember(roomId: string, signPub: string): Promise<void> {
    check.id("roomId", roomId);
    check.signPub("signPub", signPub);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const r = await this.#room(roomId);
      const cur = r && await this.#members(r.value);
      if (!r || !cur || !cur.value.members.some((m) => m.signPub === signPub)) {
        throw new NotFoundError("member", `${signPub} in room ${roomId}`);
      }
      const next = {
        ...cur.value,
        members: cur.value.members.filter((m) => m.signPub !== signPub),
      };
      if (await this.#writeMembers(r.value, cur, next)) return;
    }
    throw new StoreUnavailableError(`too much contention on room ${roomId}`);
  }

  async listMembers(roomId: string): Promise<Member[]> {
    check.id("roomId", roomId);
    const r = await this.#room(roomId);
    const ms = r && await this.#members(r.value);
    if (!ms) return [];
    return ms.value.members
      .map((m) => ({ roomId, ...m }))
      .sort((a, b) => a.addedAt - b.addedAt || cmp(a.signPub, b.signPub));
  }

  async getMember(roomId: string, signPub: string): Promise<Member | null> {
    check.id("roomId", roomId);
    check.signPub("signPub", signPub);
    const r = await this.#room(roomId);
    const ms = r && await this.#members(r.value);
    const m = ms?.value.members.find((x) => x.signPub === signPub);
    return m ? { roomId, ...m } : null;
  }

  // ---- sealed keys ----

  async putSealedKeys(roomId: string, epoch: number, keys: NewSealedKey[]): Promise<SealedKey[]> {
    const rows = sealedKeyRows(roomId, epoch, keys);
    const r = await this.#room(roomId);
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
    const r = await this.#room(roomId);
    if (r === null) return null;
    const key = `${roomPrefix(r.value)}.${recipient}.${epoch}`;
    return (await this.#a.get<SealedKey>(this.#a.kv.roomKeys, key))?.value ?? null;
  }

  async listSealedKeysFor(roomId: string, recipient: string): Promise<SealedKey[]> {
    check.id("roomId", roomId);
    check.signPub("recipient", recipient);
    const r = await this.#room(roomId);
    if (r === null) return [];
    const keys = await this.#a.keys(this.#a.kv.roomKeys, `${roomPrefix(r.value)}.${recipient}.*`);
    const rows = await Promise.all(keys.map((k) => this.#a.get<SealedKey>(this.#a.kv.roomKeys, k)));
    return rows.filter((x) => x !== null).map((x) => x.value).sort((a, b) => a.epoch - b.epoch);
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
      await this.#afterCommit("nonce expiry hint", {}, () =>
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
    const r = await this.#room(blob.roomId);
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
    const room = rooms?.get(rec.value.roomId) ?? this.#room(rec.value.roomId);
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
    await this.#afterCommit("blob deletion's cleanup", { blob: id }, async () => {
      await this.#a.delete(kv.blobMeta, ownerKey(rec.value));
      await this.#a.deleteObject(rec.value.object);
      await this.#a.delete(kv.blobMeta, blobRoomKey(id, rec.value));
    });
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
