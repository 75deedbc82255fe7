/**
 * Copying one control plane into another (SQLite into KV for
 * `unibus migrate-to-kv`, a backup archive into either store for
 * `unibus restore`): users, rooms with their change logs, members and
 * epochs, sealed keys and blobs; not nonces, which expire within a minute.
 *
 * Idempotent: identical records are skipped, so a second run after a
 * complete or an interrupted one finishes the job. A record that exists in
 * the target with different content is reported and left alone: the
 * operator decides, a copy never overwrites. Everything copied is read back
 * and compared at the end.
 *
 * @module
 */

import type { Blob, Member, Room, SealedKey, Store, User } from "./store.ts";

/** What one kind of record came to: copied, already identical, conflicting. */
export interface Tally {
  /** Where conflicts are: the target's name in their messages. */
  where: string;
  copied: number;
  identical: number;
  conflicts: string[];
}

/**
 * What a copy reads: the store's reads it needs, and every room, key and
 * blob listed (a store, or a verified backup archive).
 */
export interface CopySource extends
  Pick<
    Store,
    "getUser" | "listUsers" | "getRoom" | "listRoomChanges" | "listMembers" | "getBlob"
  > {
  listRooms(): Promise<Room[]>;
  listSealedKeys(roomId: string): Promise<SealedKey[]>;
  listBlobIds(): Promise<string[]>;
}

/** What {@linkcode copyControlPlane} found. */
export interface CopyResult {
  /** Records that differ in the target, left unchanged. */
  conflicts: string[];
  /** Copied records that did not read back the same (empty on a dry run). */
  readBackDiffers: string[];
}

const tally = (where: string): Tally => ({ where, copied: 0, identical: 0, conflicts: [] });

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** What `addUser` cannot write: a revocation, the user's own connection limit. */
async function finishUser(dst: Store, u: User): Promise<void> {
  if (u.status === "revoked") await dst.revokeUser(u.signPub);
  if (u.maxConnections !== undefined) await dst.setUserMaxConnections(u.signPub, u.maxConnections);
}

async function copyUsers(
  src: CopySource,
  dst: Store,
  dry: boolean,
  t: Tally,
): Promise<User[]> {
  const users = await src.listUsers();
  for (const u of users) {
    const have = await dst.getUser(u.signPub);
    if (have === null) {
      t.copied++;
      if (dry) continue;
      await dst.addUser({ ...u });
      await finishUser(dst, u);
    } else if (same(have, u)) {
      t.identical++;
    } else if (
      // An interrupted run added it but did not revoke it or set its limit yet
      // (a copy never un-revokes, nor changes a limit it did not set).
      (have.status === u.status || (have.status === "active" && u.status === "revoked")) &&
      (have.maxConnections === undefined || have.maxConnections === u.maxConnections) &&
      same({ ...have, status: u.status, maxConnections: u.maxConnections }, u)
    ) {
      t.copied++;
      if (!dry) await finishUser(dst, u);
    } else {
      t.conflicts.push(`user ${u.signPub} differs in ${t.where}`);
    }
  }
  return users;
}

async function copyRoom(src: CopySource, dst: Store, room: Room, dry: boolean, t: Tally) {
  const log = await src.listRoomChanges(room.id);
  const members = await src.listMembers(room.id);
  const specs = members.map((m) => ({
    signPub: m.signPub,
    role: m.role,
    addedBy: m.addedBy,
    change: m.change,
    addedAt: m.addedAt,
  }));
  const have = await dst.getRoom(room.id);
  const { epoch: _e, ...shape } = room;
  if (have !== null) {
    const { epoch: _h, ...haveShape } = have;
    if (!same(haveShape, shape)) {
      t.conflicts.push(`room ${room.id} differs in ${t.where}`);
      return;
    }
  }
  const haveLog = have ? await dst.listRoomChanges(room.id) : [];
  for (const c of haveLog) {
    if (!same(c, log[c.seq])) {
      t.conflicts.push(`room ${room.id} change ${c.seq} differs in ${t.where}`);
      return;
    }
  }
  const haveMembers = have ? await dst.listMembers(room.id) : [];
  for (const m of haveMembers) {
    const want = members.find((x) => x.signPub === m.signPub);
    if (!want || !same(m, want)) {
      t.conflicts.push(`room ${room.id} member ${m.signPub} differs in ${t.where}`);
      return;
    }
  }
  if (have !== null && have.epoch > room.epoch) {
    t.conflicts.push(
      `room ${room.id} epoch is ahead in ${t.where} (${have.epoch} > ${room.epoch})`,
    );
    return;
  }
  const complete = have !== null && haveLog.length === log.length &&
    haveMembers.length === members.length && have.epoch === room.epoch;
  if (complete) {
    t.identical++;
    return;
  }
  t.copied++;
  if (dry) return;
  // The member set written with each change is the final one: intermediate
  // sets are overwritten by the next change anyway (the store versions them).
  const after = { members: specs, epoch: room.epoch };
  if (have === null) {
    await dst.createRoom(
      { ...shape },
      log.length ? { change: { text: log[0].text, sig: log[0].sig }, members: specs } : undefined,
    );
  }
  const start = have === null && log.length ? 1 : haveLog.length;
  for (const c of log.slice(start)) {
    await dst.applyRoomChange(room.id, c.seq, { text: c.text, sig: c.sig }, after);
  }
  // Rooms without a log (schema-1 files) carry members and epoch directly.
  const now = await dst.listMembers(room.id);
  for (const m of specs) {
    if (!now.some((x) => x.signPub === m.signPub)) await dst.addMember({ roomId: room.id, ...m });
  }
  const r = await dst.getRoom(room.id);
  if (r && r.epoch < room.epoch) await dst.setRoomEpoch(room.id, r.epoch, room.epoch);
}

async function copyKeys(
  src: CopySource,
  dst: Store,
  rooms: Room[],
  dry: boolean,
  t: Tally,
): Promise<void> {
  for (const room of rooms) {
    for (const k of await src.listSealedKeys(room.id)) {
      const have = await dst.getSealedKey(room.id, k.epoch, k.recipient);
      if (have === null) {
        t.copied++;
        if (!dry) await dst.putSealedKeys(room.id, k.epoch, [{ ...k }]);
      } else if (same(have, k)) t.identical++;
      else {t.conflicts.push(
          `sealed key ${room.id}/${k.epoch}/${k.recipient} differs in ${t.where}`,
        );}
    }
  }
}

/** Blobs compared field by field and byte by byte (JSON turns bytes into an object). */
function sameBlob(a: Blob, b: Blob): boolean {
  const { data: x, ...metaA } = a;
  const { data: y, ...metaB } = b;
  return same(metaA, metaB) && x.length === y.length && x.every((v, i) => v === y[i]);
}

async function copyBlobs(
  src: CopySource,
  dst: Store,
  dry: boolean,
  t: Tally,
  onBlob?: (done: number, total: number) => void,
): Promise<void> {
  const ids = await src.listBlobIds();
  for (const [i, id] of ids.entries()) {
    onBlob?.(i, ids.length);
    const b = (await src.getBlob(id))!;
    const have = await dst.getBlob(id);
    if (have === null) {
      t.copied++;
      if (!dry) await dst.putBlob({ ...b });
    } else if (sameBlob(have, b)) {
      t.identical++;
    } else t.conflicts.push(`blob ${id} differs in ${t.where}`);
  }
}

/** Reads every copied record back from KV; returns the mismatches. */
async function verify(src: CopySource, dst: Store, users: User[], rooms: Room[]) {
  const bad: string[] = [];
  for (const u of users) if (!same(await dst.getUser(u.signPub), u)) bad.push(`user ${u.signPub}`);
  for (const r of rooms) {
    if (!same(await dst.getRoom(r.id), r)) bad.push(`room ${r.id}`);
    if (!same(await dst.listRoomChanges(r.id), await src.listRoomChanges(r.id))) {
      bad.push(`room ${r.id} change log`);
    }
    const byKey = (ms: Member[]) => [...ms].sort((a, b) => a.signPub < b.signPub ? -1 : 1);
    if (!same(byKey(await dst.listMembers(r.id)), byKey(await src.listMembers(r.id)))) {
      bad.push(`room ${r.id} members`);
    }
    for (const k of await src.listSealedKeys(r.id)) {
      if (!same(await dst.getSealedKey(r.id, k.epoch, k.recipient), k)) {
        bad.push(`sealed key ${r.id}/${k.epoch}/${k.recipient}`);
      }
    }
  }
  for (const id of await src.listBlobIds()) {
    const b = await dst.getBlob(id);
    if (!b || !sameBlob((await src.getBlob(id))!, b)) {
      bad.push(`blob ${id}`);
    }
  }
  return bad;
}

/**
 * Copies `src` into `dst` (nothing written with `dryRun`), reporting each
 * kind's tally as it is done, then reads every copied record back.
 *
 * @example
 * ```ts
 * const { conflicts } = await copyControlPlane(sqlite, kv, { dryRun: false, report: console.log });
 * ```
 */
export async function copyControlPlane(
  src: CopySource,
  dst: Store,
  opts: {
    dryRun: boolean;
    report: (kind: string, t: Tally) => void;
    /** The target as conflicts name it ("KV" unless said). */
    targetName?: string;
    /** Called before each blob (the long part of a large copy). */
    onBlob?: (done: number, total: number) => void;
  },
): Promise<CopyResult> {
  const dry = opts.dryRun;
  const where = opts.targetName ?? "KV";
  const tu = tally(where);
  const users = await copyUsers(src, dst, dry, tu);
  opts.report("users", tu);
  const tr = tally(where);
  const rooms = await src.listRooms();
  for (const r of rooms) await copyRoom(src, dst, r, dry, tr);
  opts.report("rooms (change logs, members, epochs)", tr);
  const tk = tally(where);
  await copyKeys(src, dst, rooms, dry, tk);
  opts.report("sealed keys", tk);
  const tb = tally(where);
  await copyBlobs(src, dst, dry, tb, opts.onBlob);
  opts.report("blobs", tb);
  const conflicts = [tu, tr, tk, tb].flatMap((t) => t.conflicts);
  if (dry) return { conflicts, readBackDiffers: [] };
  const bad = await verify(src, dst, users, rooms);
  return {
    conflicts,
    readBackDiffers: bad.filter((b) => !conflicts.some((c) => c.includes(b.split(" ")[1]))),
  };
}
