/**
 * Rooms on the KV store: the room and subject records, the member set and
 * the change log, the rooms_by_member hint, and a login's confirmed reads of
 * them (the invariants are at the top of kv.ts). {@linkcode KvStore}'s room
 * methods delegate here.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import type { KvAccess } from "./kv_access.ts";
import {
  type BlobRecord,
  cmp,
  creatorKey,
  definitely,
  live,
  MAX_CAS_ATTEMPTS,
  type MemberRecord,
  mergeMembers,
  message,
  newIncarnation,
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
import {
  check,
  ConflictError,
  DamagedRecordError,
  type Member,
  MemberExistsError,
  memberRow,
  type NewMember,
  type NewRoom,
  newRoomRow,
  NotFoundError,
  RecordTooNewError,
  type Room,
  type RoomChange,
  type RoomCounts,
  RoomExistsError,
  type RoomGenesis,
  type RoomStateAfter,
  StoreError,
  StoreOutcomeUnknownError,
  StoreUnavailableError,
  type User,
  type UserAccess,
  validateAppliedChange,
  validateEpochMove,
  validateGenesis,
  validateNewMember,
} from "./store.ts";

/**
 * The room side of {@linkcode KvStore}.
 *
 * @example
 * ```ts
 * const rooms = new KvRooms(access, log);
 * const room = await rooms.getRoom(id);
 * ```
 */
export class KvRooms {
  #a: KvAccess;
  #log?: Logger;

  constructor(access: KvAccess, log?: Logger) {
    this.#a = access;
    this.#log = log;
  }

  /**
   * The visible room record (invariant 1), with its revision. `current`: the
   * id record is read linearizably (admission, see `#roomsForMember`).
   */
  async room(id: string, current = false): Promise<RoomRead | null> {
    const rec = current
      ? await this.#a.getCurrent<RoomRecord>(this.#a.kv.rooms, roomKey(id))
      : await this.#a.get<RoomRecord>(this.#a.kv.rooms, roomKey(id));
    if (rec === null) return null;
    const claim = await this.#a.get<SubjectClaim>(this.#a.kv.rooms, subjectKey(rec.value.subject));
    if (claim === null || claim.value.id !== id || claim.value.inc !== rec.value.inc) return null;
    return rec;
  }

  /** Every visible room (invariant 1), sorted by id: backups and copies list them all. */
  async listRooms(): Promise<Room[]> {
    const keys = await this.#a.keys(this.#a.kv.rooms, "id.*");
    const rooms = await Promise.all(keys.map((k) => this.room(untok(k.slice("id.".length)))));
    return rooms.filter((r) => r !== null).map((r) => publicRoom(r.value))
      .sort((a, b) => cmp(a.id, b.id));
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
        const visible = cur !== null && (await this.room(row.id)) !== null;
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
      visibleInc = (await this.room(row.id))?.value.inc;
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
    const r = await this.room(id);
    return r ? publicRoom(r.value) : null;
  }

  async getRoomBySubject(subject: string): Promise<Room | null> {
    check.subject("subject", subject);
    const claim = await this.#a.get<SubjectClaim>(this.#a.kv.rooms, subjectKey(subject));
    if (claim === null) return null;
    const r = await this.room(claim.value.id);
    return r && r.value.subject === subject ? publicRoom(r.value) : null;
  }

  async listRoomsForMember(signPub: string): Promise<Room[]> {
    check.signPub("signPub", signPub);
    return await this.#roomsForMember(signPub, false);
  }

  /**
   * The rooms whose member set names `signPub`. `current`: every record that
   * grants one of them (the room's id record and its member set) is read
   * linearizably (`KvAccess.startCurrent`), so a room removed or a
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
        const r = await this.room(id);
        if (r === null) return null;
        const ms = await this.#members(r.value);
        return this.#grants(id, ms, signPub) ? publicRoom(r.value) : null;
      } catch (err) {
        // Either way this room is not granted: less access, never a guess.
        if (err instanceof DamagedRecordError || err instanceof RecordTooNewError) return null;
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
      const r = await this.room(id, true);
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
   * after the call began (`KvAccess.startCurrent`), so no login is
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
    // The login is decided on this record: a limit that is not a count
    // would lift it (every comparison with it is false), so the record is
    // damaged and the login fails closed, as for any damaged record.
    const own = user?.value.maxConnections;
    if (own !== undefined) {
      try {
        check.maxConnections("maxConnections", own);
      } catch {
        throw this.#a.damaged(this.#a.kv.users, signPub, "maxConnections is not a count");
      }
    }
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
        this.room(untok(idTok)),
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
      const r = await this.room(id);
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
      const r = await this.room(id);
      if (r === null || r.value.inc !== inc || r.value.epoch >= epoch) return;
      const next = { ...r.value, epoch };
      if (await this.#a.update(this.#a.kv.rooms, roomKey(id), next, r.revision) !== false) return;
    }
  }

  async deleteRoom(id: string): Promise<void> {
    check.id("id", id);
    const kv = this.#a.kv;
    const r = await this.room(id);
    if (r === null) throw new NotFoundError("room", id);
    const { inc, subject } = r.value;
    // Invariant 2: the id record first; from here nothing of it is readable.
    if (!await this.#a.delete(kv.rooms, roomKey(id), r.revision)) {
      throw new ConflictError(`room ${id} changed while being deleted; retry`);
    }
    // Committed: the rest only reclaims what the old incarnation left.
    await this.afterCommit("room deletion's cleanup", { room: id, inc }, async () => {
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
  async afterCommit(
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
    await this.afterCommit("index removal", { room: room.id }, async () => {
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
      const r = await this.room(roomId);
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
      await this.afterCommit("change log and epoch", { room: roomId, seq }, async () => {
        await this.#a.create(kv.changes, `${prefix}.${seq}`, next.change);
        await this.#raiseEpoch(roomId, r.value.inc, after.epoch);
      });
      return;
    }
    throw new StoreUnavailableError(`too much contention on room ${roomId}`);
  }

  async listRoomChanges(roomId: string): Promise<RoomChange[]> {
    check.id("roomId", roomId);
    const r = await this.room(roomId);
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
      const r = await this.room(member.roomId);
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
      const r = await this.room(roomId);
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
    const r = await this.room(roomId);
    const ms = r && await this.#members(r.value);
    if (!ms) return [];
    return ms.value.members
      .map((m) => ({ roomId, ...m }))
      .sort((a, b) => a.addedAt - b.addedAt || cmp(a.signPub, b.signPub));
  }

  async getMember(roomId: string, signPub: string): Promise<Member | null> {
    check.id("roomId", roomId);
    check.signPub("signPub", signPub);
    const r = await this.room(roomId);
    const ms = r && await this.#members(r.value);
    const m = ms?.value.members.find((x) => x.signPub === signPub);
    return m ? { roomId, ...m } : null;
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
}
