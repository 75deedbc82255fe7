/**
 * `unibus migrate-to-kv`: copies a single-node SQLite control plane (users,
 * rooms with their change logs, members and epochs, sealed keys, blobs; not
 * nonces, which expire within a minute) into a node's KV buckets, as the
 * internal service identity.
 *
 * Idempotent: identical records are skipped, so a second run after a
 * complete or an interrupted one finishes the job. A record that exists in KV
 * with different content is reported and left alone (exit 1): the operator
 * decides, the migration never overwrites. Everything is read back and
 * compared at the end.
 *
 * @module
 */

import { createLogger } from "../lib/log.ts";
import type { KvStore } from "../lib/store/kv.ts";
import { SqliteStore } from "../lib/store/sqlite.ts";
import { type DataDirServer, startDataDirServer } from "../server/nats/data_dir_server.ts";
import type { Blob, Member, Room, Store, User } from "../lib/store/store.ts";
import { type OptionTable, parseCommandArgs, renderHelp, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import {
  KV_TARGET_OPTIONS,
  openKvAs,
  openKvTarget,
  parseKvTarget,
  replicationLine,
} from "./kv_target.ts";
import { DEFAULT_DB_PATH, requireDb } from "./user.ts";

const OPTIONS: OptionTable = {
  "data-dir": {
    type: "string",
    valueName: "DIR",
    description: "a stopped node's data dir: migrate into its own JetStream store " +
      "(a temporary loopback nats-server); instead of --nats-url",
  },
  db: {
    type: "string",
    valueName: "PATH",
    description: "the SQLite file to copy (serve stopped)",
    defaultText: `${DEFAULT_DB_PATH}, or DIR/unibus.db with --data-dir`,
  },
  ...KV_TARGET_OPTIONS,
  "dry-run": { type: "boolean", description: "compare and report; write nothing" },
};

/** Help of `unibus migrate-to-kv`. */
export const MIGRATE_HELP: string = renderHelp(
  "unibus migrate-to-kv --data-dir DIR [--db PATH] [--dry-run]\n" +
    "       unibus migrate-to-kv --internal-id-file PATH [--db PATH] [--nats-url URL] [--ca PEM] [--kv-replicas 1|3] [--dry-run]",
  "Copies the SQLite control plane into a node's KV buckets: those of a stopped\n" +
    "node's data dir (--data-dir; then start serve --store kv on it), or a running\n" +
    "node's (--nats-url). Safe to re-run; records that differ in KV are reported\n" +
    "and left alone (exit 1).",
  OPTIONS,
);

interface Tally {
  copied: number;
  identical: number;
  conflicts: string[];
}

const tally = (): Tally => ({ copied: 0, identical: 0, conflicts: [] });

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

async function copyUsers(src: SqliteStore, dst: Store, dry: boolean, t: Tally): Promise<User[]> {
  const users = await src.listUsers();
  for (const u of users) {
    const have = await dst.getUser(u.signPub);
    if (have === null) {
      t.copied++;
      if (dry) continue;
      await dst.addUser({ ...u });
      if (u.status === "revoked") await dst.revokeUser(u.signPub);
    } else if (same(have, u)) {
      t.identical++;
    } else if (same({ ...have, status: "revoked" }, u)) {
      // An interrupted run added it but did not revoke it yet.
      t.copied++;
      if (!dry) await dst.revokeUser(u.signPub);
    } else {
      t.conflicts.push(`user ${u.signPub} differs in KV`);
    }
  }
  return users;
}

async function copyRoom(src: SqliteStore, dst: Store, room: Room, dry: boolean, t: Tally) {
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
      t.conflicts.push(`room ${room.id} differs in KV`);
      return;
    }
  }
  const haveLog = have ? await dst.listRoomChanges(room.id) : [];
  for (const c of haveLog) {
    if (!same(c, log[c.seq])) {
      t.conflicts.push(`room ${room.id} change ${c.seq} differs in KV`);
      return;
    }
  }
  const haveMembers = have ? await dst.listMembers(room.id) : [];
  for (const m of haveMembers) {
    const want = members.find((x) => x.signPub === m.signPub);
    if (!want || !same(m, want)) {
      t.conflicts.push(`room ${room.id} member ${m.signPub} differs in KV`);
      return;
    }
  }
  if (have !== null && have.epoch > room.epoch) {
    t.conflicts.push(`room ${room.id} epoch is ahead in KV (${have.epoch} > ${room.epoch})`);
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
  src: SqliteStore,
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
      else t.conflicts.push(`sealed key ${room.id}/${k.epoch}/${k.recipient} differs in KV`);
    }
  }
}

/** Blobs compared with their bytes (JSON turns a Uint8Array into an object). */
function sameBlob(a: Blob, b: Blob): boolean {
  return same({ ...a, data: [...a.data] }, { ...b, data: [...b.data] });
}

async function copyBlobs(src: SqliteStore, dst: Store, dry: boolean, t: Tally): Promise<void> {
  for (const id of await src.listBlobIds()) {
    const b = (await src.getBlob(id))!;
    const have = await dst.getBlob(id);
    if (have === null) {
      t.copied++;
      if (!dry) await dst.putBlob({ ...b });
    } else if (sameBlob(have, b)) {
      t.identical++;
    } else t.conflicts.push(`blob ${id} differs in KV`);
  }
}

/** Reads every copied record back from KV; returns the mismatches. */
async function verify(src: SqliteStore, dst: Store, users: User[], rooms: Room[]) {
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

async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, OPTIONS, { maxPositionals: 0 });
  if (values.help) {
    console.log(MIGRATE_HELP);
    return 0;
  }
  const dataDir = typeof values["data-dir"] === "string" ? values["data-dir"] : null;
  if (dataDir === "") throw new UsageError("--data-dir must not be empty");
  if (dataDir !== null) {
    // The temporary server admits a key made for the run, on loopback, R1.
    for (const flag of Object.keys(KV_TARGET_OPTIONS)) {
      if (values[flag] !== undefined) {
        throw new UsageError(
          `--${flag} does not go with --data-dir (a stopped node's own store, on loopback, R1); ` +
            "a running node or a cluster is migrated with --nats-url",
        );
      }
    }
  }
  const target = dataDir === null ? parseKvTarget(values) : null;
  const db = typeof values.db === "string"
    ? values.db
    : dataDir !== null
    ? `${dataDir.replace(/\/+$/, "")}/unibus.db`
    : DEFAULT_DB_PATH;
  if (db === "") throw new UsageError("--db must not be empty");
  await requireDb(db);
  const dry = values["dry-run"] === true;

  // First, so that a serve running on the data dir stops us before anything is read.
  let server: DataDirServer | null = null;
  if (dataDir !== null) {
    server = await startDataDirServer(
      dataDir,
      createLogger("migrate.nats-server", { level: "warn", sink: (l) => console.error(l) }),
    );
    console.log(`temporary nats-server on ${dataDir}'s JetStream store at ${server.url}`);
  }
  try {
    await migrate(
      db,
      dry,
      async () =>
        server
          ? await openKvAs(server.url, server.user, { caFile: null, replicas: 1 })
          : await openKvTarget(target!),
    );
  } finally {
    await server?.stop();
  }
  return 0;
}

async function migrate(db: string, dry: boolean, openDst: () => Promise<KvStore>): Promise<void> {
  const src = await SqliteStore.open(db);
  try {
    const dst = await openDst();
    try {
      const line = (kind: string, t: Tally) =>
        console.log(
          `${kind}: ${t.copied} ${dry ? "to copy" : "copied"}, ${t.identical} identical, ` +
            `${t.conflicts.length} conflicting`,
        );
      const conflicts: string[] = [];
      const tu = tally();
      const users = await copyUsers(src, dst, dry, tu);
      line("users", tu);
      const tr = tally();
      const rooms = await src.listRooms();
      for (const r of rooms) await copyRoom(src, dst, r, dry, tr);
      line("rooms (change logs, members, epochs)", tr);
      const tk = tally();
      await copyKeys(src, dst, rooms, dry, tk);
      line("sealed keys", tk);
      const tb = tally();
      await copyBlobs(src, dst, dry, tb);
      line("blobs", tb);
      for (const t of [tu, tr, tk, tb]) conflicts.push(...t.conflicts);
      for (const c of conflicts) console.log(`conflict: ${c} (left unchanged)`);
      if (!dry) {
        const bad = await verify(src, dst, users, rooms);
        const bad2 = bad.filter((b) => !conflicts.some((c) => c.includes(b.split(" ")[1])));
        if (bad2.length) {
          throw new Error(`read-back differs for ${bad2.length} record(s): ${bad2.join(", ")}`);
        }
        console.log("read back: every copied record matches");
        console.log(await replicationLine(dst));
      } else {
        console.log("dry run: nothing written");
      }
      if (conflicts.length) {
        throw new Error(`${conflicts.length} record(s) differ in KV and were left unchanged`);
      }
    } finally {
      await dst.close();
    }
  } finally {
    await src.close();
  }
}

/** `unibus migrate-to-kv`. */
export const migrateCommand: Command = {
  name: "migrate-to-kv",
  summary: "copy the SQLite control plane into a node's KV buckets",
  run,
};
