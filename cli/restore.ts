/**
 * `unibus restore`: a backup archive (lib/store/archive.ts) into a SQLite
 * file or a running node's KV, whichever store it was taken from.
 *
 * Nothing is written until the whole archive is verified: its format, its
 * checksum and record count (a truncated or damaged file is refused), every
 * record by the store's own rules, and every room's signed membership log
 * against the room's stored members. The target must be empty: restoring
 * over a live control plane would mix two histories. `--force` restores into
 * a non-empty one by adding only what is absent; a record that exists with
 * other content is reported and left as it is (exit 1), never overwritten.
 * Everything written is read back and compared.
 *
 * @module
 */

import { ArchiveError, VerifiedArchive } from "../lib/store/archive.ts";
import type { NatsConnection } from "@nats-io/transport-node";
import { createLogger } from "../lib/log.ts";
import { copyControlPlane } from "../lib/store/mod.ts";
import { DEFAULT_LIMITS } from "../server/limits.ts";
import { type DataDirServer, startDataDirServer } from "../server/nats/data_dir_server.ts";
import { HistoryNotEmptyError, writeRoomHistory } from "../server/rooms/stream_history.ts";
import { type OptionTable, parseCommandArgs, renderHelp, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import { dialAs, dialRoomsAccount } from "./kv_target.ts";
import {
  auditCliChange,
  describeTarget,
  openTargetStore,
  STORE_OPTIONS,
  type StoreTarget,
  storeTargetOf,
} from "./store_target.ts";

const OPTIONS: OptionTable = {
  in: { type: "string", valueName: "FILE", description: "the archive `unibus backup` wrote" },
  "data-dir": {
    type: "string",
    valueName: "DIR",
    description: "restore into DIR/unibus.db (serve's layout; created if absent); instead of --db",
  },
  ...STORE_OPTIONS,
  force: {
    type: "boolean",
    description: "restore into a non-empty store: add what is absent, report what differs",
  },
  "dry-run": { type: "boolean", description: "verify and compare; write nothing" },
  "skip-history": {
    type: "boolean",
    description: "restore the control plane only, not the persisted rooms' stored packets",
  },
  "allow-unsigned-rooms": {
    type: "boolean",
    description: "accept rooms without a signed membership log (stores older than the log)",
  },
  "audit-log": {
    type: "string",
    valueName: "FILE",
    description: "append the restore to this audit log",
    defaultText: "audit.log beside the SQLite file, or beside --internal-id-file with --store kv",
  },
};

const HELP = renderHelp(
  "unibus restore --in FILE [--data-dir DIR | --db PATH] [--force] [--dry-run]\n" +
    "       unibus restore --in FILE --store kv --internal-id-file PATH [--nats-url URL] [--ca PEM] " +
    "[--kv-replicas 1|3] [--force] [--dry-run]\n" +
    "       (an archive made --with-history also restores persisted rooms' stored packets,\n" +
    "       into --data-dir's JetStream store (serve stopped) or the running node's, unless\n" +
    "       --skip-history)",
  "Restores a backup archive into an empty control plane (SQLite or a running node's KV).\n" +
    "The archive's checksum and every room's signed membership log are verified before\n" +
    "anything is written. Progress goes to stderr.",
  OPTIONS,
);

async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, OPTIONS, { maxPositionals: 0 });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const input = typeof values.in === "string" ? values.in : "";
  if (input === "") throw new UsageError("--in FILE is required");
  const target = storeTargetOf(values, { dataDir: true });
  const dry = values["dry-run"] === true;
  const skipHistory = values["skip-history"] === true;
  const progress = (line: string) => console.error(`restore: ${line}`);

  let archive: VerifiedArchive;
  try {
    archive = await VerifiedArchive.open(input, {
      allowUnsignedRooms: values["allow-unsigned-rooms"] === true,
      progress,
    });
  } catch (err) {
    if (err instanceof ArchiveError) throw new Error(`${err.message}; nothing was written`);
    throw err;
  }
  try {
    const c = archive.counts;
    console.log(
      `archive verified: ${c.users} users, ${c.rooms} rooms (signed logs verified), ` +
        `${c.keys} sealed keys, ${c.blobs} blobs (${c.blobBytes} bytes)` +
        `${c.messages ? `, ${c.messages} stored packets of persisted rooms` : ""}; taken from ` +
        `${archive.header.source} by unibus ${archive.header.unibus} at ${archive.header.created_at}`,
    );
    const history = skipHistory ? [] : archive.historyRooms();
    if (history.length && target.kind === "sqlite" && values["data-dir"] === undefined) {
      throw new UsageError(
        `the archive holds ${c.messages} stored packets of persisted rooms: give --data-dir ` +
          "(their streams go into its JetStream store), or --skip-history",
      );
    }
    if (target.kind === "sqlite" && values["data-dir"] !== undefined && !dry) {
      await Deno.mkdir(String(values["data-dir"]), { recursive: true, mode: 0o700 });
    }
    if (dry && target.kind === "sqlite" && !await Deno.stat(target.db).catch(() => null)) {
      console.log(`dry run: ${target.db} does not exist; everything would be restored`);
      return 0;
    }
    const store = await openTargetStore(target, { mayCreate: !dry });
    try {
      const held = (await store.listUsers()).length + (await store.listRooms()).length +
        (await store.listBlobIds()).length;
      if (held > 0 && values.force !== true) {
        throw new Error(
          `${describeTarget(target)} is not empty (${held} users, rooms and blobs); restore ` +
            "writes into an empty store, or adds what is absent with --force",
        );
      }
      const { conflicts, readBackDiffers } = await copyControlPlane(archive, store, {
        dryRun: dry,
        targetName: "the target",
        report: (kind, t) =>
          console.log(
            `${kind}: ${t.copied} ${dry ? "to restore" : "restored"}, ${t.identical} identical, ` +
              `${t.conflicts.length} conflicting`,
          ),
        onBlob: (done, total) => {
          if (done > 0 && done % 100 === 0) progress(`blobs: ${done}/${total}`);
        },
      });
      for (const conflict of conflicts) console.log(`conflict: ${conflict} (left unchanged)`);
      if (dry) {
        console.log("dry run: nothing written");
      } else {
        if (readBackDiffers.length) {
          throw new Error(
            `read-back differs for ${readBackDiffers.length} record(s): ${
              readBackDiffers.join(", ")
            }`,
          );
        }
        console.log(`read back: every restored record matches, in ${describeTarget(target)}`);
        if (history.length) {
          const { messages, refused } = await restoreHistory(archive, target, values, progress);
          console.log(
            `history: ${messages} stored packets restored into ${
              history.length - refused.length
            } rooms`,
          );
          for (const r of refused) console.log(`conflict: ${r}`);
          conflicts.push(...refused);
        }
        const explicit = typeof values["audit-log"] === "string" ? values["audit-log"] : undefined;
        await auditCliChange(explicit, target, "control_plane.restore", "control plane restored", {
          archive: input,
          sha256: archive.sha256,
          users: c.users,
          rooms: c.rooms,
          blobs: c.blobs,
          force: values.force === true,
          conflicts: conflicts.length,
        });
      }
      if (conflicts.length) {
        throw new Error(
          `${conflicts.length} record(s) or histories differ in the target and were left unchanged`,
        );
      }
    } finally {
      await store.close();
    }
  } finally {
    archive.close();
  }
  return 0;
}

/**
 * Appends each persisted room's stored packets to its stream: the running
 * node's (KV: serve makes a restored room's stream itself, with its own
 * limits and replicas, and is waited for), or a stopped node's data dir
 * (SQLite: through a temporary nats-server on its JetStream store, which
 * refuses a data dir a serve runs on). A stream already holding packets is
 * left alone and reported.
 */
async function restoreHistory(
  archive: VerifiedArchive,
  target: StoreTarget,
  values: Record<string, string | boolean | undefined>,
  progress: (line: string) => void,
): Promise<{ messages: number; refused: string[] }> {
  let server: DataDirServer | null = null;
  let nc: NatsConnection;
  if (target.kind === "kv") {
    nc = await dialRoomsAccount(target.kv);
  } else {
    server = await startDataDirServer(
      String(values["data-dir"]),
      createLogger("restore.nats-server", { level: "warn", sink: (l) => console.error(l) }),
    ).catch((err) => {
      throw new Error(
        `the control plane is restored, its history is not: ${(err as Error).message}; stop ` +
          "serve on it and run the same restore again with --force",
      );
    });
    nc = await dialAs(server.url, server.roomsUser, null);
  }
  const refused: string[] = [];
  let messages = 0;
  try {
    for (const roomId of archive.historyRooms()) {
      const room = (await archive.getRoom(roomId))!;
      try {
        const n = await writeRoomHistory(nc, room, archive.history(roomId), {
          create: server ? { maxBytes: DEFAULT_LIMITS.roomStreamMaxBytes, replicas: 1 } : undefined,
          waitMs: server ? 0 : 60_000,
        });
        messages += n;
        progress(`history of ${room.subject}: ${n} stored packets`);
      } catch (err) {
        if (!(err instanceof HistoryNotEmptyError)) throw err;
        refused.push(err.message);
      }
    }
  } finally {
    await nc.close();
    await server?.stop();
  }
  return { messages, refused };
}

/** `unibus restore`. */
export const restoreCommand: Command = { name: "restore", run };
