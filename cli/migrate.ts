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
import { copyControlPlane, type KvStore, openStore } from "../lib/store/mod.ts";
import { type DataDirServer, startDataDirServer } from "../server/nats/data_dir_server.ts";
import { type OptionTable, parseCommandArgs, renderHelp, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import {
  KV_TARGET_OPTIONS,
  openKvAs,
  openKvTarget,
  parseKvTarget,
  replicationLine,
} from "./kv_target.ts";
import { DEFAULT_DB_PATH, requireDb } from "./store_target.ts";

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
  const src = await openStore({ kind: "sqlite", path: db });
  try {
    const dst = await openDst();
    try {
      const { conflicts, readBackDiffers } = await copyControlPlane(src, dst, {
        dryRun: dry,
        report: (kind, t) =>
          console.log(
            `${kind}: ${t.copied} ${dry ? "to copy" : "copied"}, ${t.identical} identical, ` +
              `${t.conflicts.length} conflicting`,
          ),
      });
      for (const c of conflicts) console.log(`conflict: ${c} (left unchanged)`);
      if (!dry) {
        if (readBackDiffers.length) {
          throw new Error(
            `read-back differs for ${readBackDiffers.length} record(s): ${
              readBackDiffers.join(", ")
            }`,
          );
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
  run,
};
