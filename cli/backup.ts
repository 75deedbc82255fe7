/**
 * `unibus backup`: the whole control plane (users, rooms with their signed
 * change logs and members, sealed keys, blobs) into one verified archive
 * file (lib/store/archive.ts), from a SQLite file while serve runs or is
 * stopped, or from a running node's KV as the internal identity.
 *
 * Consistency: SQLite is copied as of one instant first (`VACUUM INTO`, WAL
 * included), then archived from the copy. KV has no snapshot, so the
 * control-plane streams' last sequences are read before and after the
 * archive is written; if anything was written in between the archive is
 * written again (three tries), so a backup never mixes two states.
 *
 * The file is written as `FILE.partial` (new, 0600: it lists every user and
 * room) and linked into place only when complete (never over a file): a crash or a full disk
 * leaves no file that looks like a backup.
 *
 * @module
 */

import { dirname } from "node:path";
import { createLogger } from "../lib/log.ts";
import { type ArchiveWritten, type HistorySource, writeArchive } from "../lib/store/archive.ts";
import { type CopySource, type KvStore, openStore, snapshotSqlite } from "../lib/store/mod.ts";
import { type OptionTable, parseCommandArgs, renderHelp, UsageError } from "./args.ts";
import type { Room } from "../lib/store/store.ts";
import { startDataDirServer } from "../server/nats/data_dir_server.ts";
import { readRoomHistory } from "../server/rooms/stream_history.ts";
import type { Command } from "./command.ts";
import { dialAs, dialRoomsAccount } from "./kv_target.ts";
import {
  describeTarget,
  openTargetStore,
  requireDb,
  STORE_OPTIONS,
  storeTargetOf,
} from "./store_target.ts";

const OPTIONS: OptionTable = {
  out: { type: "string", valueName: "FILE", description: "the archive to write (must not exist)" },
  "data-dir": {
    type: "string",
    valueName: "DIR",
    description: "back up DIR/unibus.db (serve's layout); instead of --db",
  },
  ...STORE_OPTIONS,
  "with-history": {
    type: "boolean",
    description:
      "also persisted rooms' stored packets (--store kv, or --data-dir of a stopped node)",
  },
};

const HELP = renderHelp(
  "unibus backup --out FILE [--data-dir DIR | --db PATH] [--with-history]\n" +
    "       unibus backup --out FILE --store kv --internal-id-file PATH [--nats-url URL] [--ca PEM] " +
    "[--with-history]",
  "Writes the control plane (users, rooms, signed membership logs, sealed keys, blobs) into\n" +
    "one checksummed archive, while serve runs or not; with --with-history also the persisted\n" +
    "rooms' stored (end-to-end encrypted) packets. The archive holds no private key;\n" +
    "keep it where only operators can read it. Progress goes to stderr.",
  OPTIONS,
);

/** How often a KV backup is written again because the store changed meanwhile. */
const KV_ATTEMPTS = 3;

async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, OPTIONS, { maxPositionals: 0 });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const out = typeof values.out === "string" ? values.out : "";
  if (out === "") throw new UsageError("--out FILE is required");
  const target = storeTargetOf(values, { dataDir: true });
  const withHistory = values["with-history"] === true;
  if (withHistory && target.kind === "sqlite" && values["data-dir"] === undefined) {
    throw new UsageError(
      "--with-history reads the node's room streams: give --data-dir (of a stopped node) " +
        "or --store kv",
    );
  }
  if (await exists(out)) throw new Error(`${out} exists; backup never overwrites a file`);
  const outDir = await Deno.stat(dirname(out)).catch(() => null);
  if (!outDir?.isDirectory) throw new Error(`cannot write ${out}: no directory ${dirname(out)}`);
  const progress = (line: string) => console.error(`backup: ${line}`);
  const partial = `${out}.partial`;
  let written: ArchiveWritten;
  try {
    if (target.kind === "sqlite") {
      await requireDb(target.db);
      const dataDir = String(values["data-dir"] ?? "");
      written = withHistory
        ? await withDataDirRooms(
          dataDir,
          (history) => fromSqliteSnapshot(target.db, partial, progress, history),
        )
        : await fromSqliteSnapshot(target.db, partial, progress);
    } else {
      const store = await openTargetStore(target) as KvStore;
      try {
        const rooms = withHistory ? await dialRoomsAccount(target.kv) : null;
        try {
          const history = rooms ? (room: Room) => readRoomHistory(rooms, room.id) : undefined;
          written = await fromKv(store, partial, progress, history);
        } finally {
          await rooms?.close();
        }
      } finally {
        await store.close();
      }
    }
    // A link fails if `out` appeared since the check above; a rename would
    // replace it: never overwrite, whoever put a file there meanwhile.
    try {
      await Deno.link(partial, out);
    } catch (err) {
      if (err instanceof Deno.errors.AlreadyExists) {
        throw new Error(`${out} exists; backup never overwrites a file`);
      }
      throw err;
    }
    await Deno.remove(partial);
  } catch (err) {
    await Deno.remove(partial).catch(() => {});
    throw err;
  }
  console.log(
    `backup of ${describeTarget(target)} written to ${out}: ${written.users} users, ` +
      `${written.rooms} rooms, ${written.keys} sealed keys, ${written.blobs} blobs` +
      `${withHistory ? `, ${written.messages} stored packets of persisted rooms` : ""} ` +
      `(${written.bytes} bytes, sha256 ${written.sha256})`,
  );
  return 0;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** Writes the archive into a new 0600 file, synced before it is linked into place. */
async function writeFile(
  src: CopySource,
  path: string,
  source: "sqlite" | "kv",
  progress: (line: string) => void,
  history?: HistorySource,
): Promise<ArchiveWritten> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) {
      throw new Error(`${path} exists: another backup is writing it, or one was interrupted`);
    }
    throw new Error(`cannot create ${path}: ${(err as Error).message}`);
  }
  try {
    const written = await writeArchive(src, file, { source, progress, history });
    await file.sync();
    return written;
  } finally {
    file.close();
  }
}

async function fromSqliteSnapshot(
  db: string,
  partial: string,
  progress: (line: string) => void,
  history?: HistorySource,
): Promise<ArchiveWritten> {
  // The snapshot sits beside the archive, not in /tmp: it is as large as the
  // store and holds the same records, so it belongs where the operator chose.
  const dir = await Deno.makeTempDir({ dir: dirname(partial), prefix: ".unibus-backup-" });
  try {
    const snapshot = `${dir}/snapshot.db`;
    await snapshotSqlite(db, snapshot);
    progress(`snapshot of ${db} taken`);
    const store = await openStore({ kind: "sqlite", path: snapshot });
    try {
      return await writeFile(store, partial, "sqlite", progress, history);
    } finally {
      await store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function fromKv(
  store: KvStore,
  partial: string,
  progress: (line: string) => void,
  history?: HistorySource,
): Promise<ArchiveWritten> {
  for (let attempt = 1; attempt <= KV_ATTEMPTS; attempt++) {
    const before = JSON.stringify(await store.writeMarks());
    const written = await writeFile(store, partial, "kv", progress, history);
    if (JSON.stringify(await store.writeMarks()) === before) return written;
    await Deno.remove(partial);
    if (attempt < KV_ATTEMPTS) {
      progress(
        `the control plane changed while it was read; again (${attempt + 1}/${KV_ATTEMPTS})`,
      );
    }
  }
  throw new Error(
    `the control plane changed during each of ${KV_ATTEMPTS} tries; back up at a quieter time`,
  );
}

/**
 * Runs `fn` with the room streams of a stopped node's data dir, through a
 * temporary loopback nats-server on its JetStream store (which refuses a
 * data dir a serve runs on: its streams change under a reader).
 */
async function withDataDirRooms<T>(
  dataDir: string,
  fn: (history: HistorySource) => Promise<T>,
): Promise<T> {
  const server = await startDataDirServer(
    dataDir,
    createLogger("backup.nats-server", { level: "warn", sink: (l) => console.error(l) }),
  );
  try {
    const nc = await dialAs(server.url, server.roomsUser, null);
    try {
      return await fn((room) => readRoomHistory(nc, room.id));
    } finally {
      await nc.close();
    }
  } finally {
    await server.stop();
  }
}

/** `unibus backup`. */
export const backupCommand: Command = { name: "backup", run };
