/**
 * How long `unibus backup` and `unibus restore` take on a control plane of
 * some size, each as an operator runs it (its own process, through the real
 * launcher): a running single node's SQLite file backed up, restored into a
 * new data dir and into a running KV node, and that KV backed up again.
 * Beside them, in the same run, a plain copy of the SQLite file: the least
 * any backup of it costs.
 *
 * @module
 */

import { connect } from "../../lib/client/client.ts";
import { generateIdentity } from "../../lib/identity/identity.ts";
import { openSqliteStore } from "../../lib/store/sqlite.ts";
import { startServe } from "../../tests/helpers/serve_process.ts";
import { addBenchUsers } from "./users.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");

/** The control plane backed up. */
export interface BackupShape {
  users: number;
  rooms: number;
  /** Members added to each room, in one signed change. */
  membersPerRoom: number;
  blobs: number;
  blobBytes: number;
}

/** What {@linkcode benchBackup} measured, in ms and bytes. */
export interface BackupFigures extends BackupShape {
  archiveBytes: number;
  fileCopyMs: number;
  backupSqliteMs: number;
  restoreSqliteMs: number;
  restoreKvMs: number;
  backupKvMs: number;
}

async function timed(args: string[]): Promise<number> {
  const t0 = performance.now();
  const out = await new Deno.Command("bash", {
    args: [`${ROOT}/scripts/unibus`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const ms = Math.round(performance.now() - t0);
  if (!out.success) {
    throw new Error(`unibus ${args[0]} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return ms;
}

/**
 * Builds the control plane `shape` describes on a running node, then times
 * each step.
 *
 * @example
 * ```ts
 * const f = await benchBackup({ users: 1000, rooms: 200, membersPerRoom: 5, blobs: 200, blobBytes: 65536 });
 * ```
 */
export async function benchBackup(shape: BackupShape): Promise<BackupFigures> {
  const root = await Deno.makeTempDir({ prefix: "unibus-bench-backup-" });
  const nodes: Array<{ stop(): Promise<unknown> }> = [];
  try {
    await Deno.mkdir(`${root}/a`);
    const a = await startServe({
      dataDir: `${root}/a`,
      extraArgs: [
        "--bus-auth",
        "enforce",
        "--internal-id-file",
        `${root}/a/internal.id`,
        "--max-rooms-per-user",
        String(shape.rooms),
      ],
    });
    nodes.push(a);
    const store = await openSqliteStore(`${a.dataDir}/unibus.db`);
    const admin = generateIdentity("admin");
    const others = Array.from({ length: shape.users - 1 }, (_, i) => generateIdentity(`u${i}`));
    await addBenchUsers(store, [admin], "admin");
    await addBenchUsers(store, others, "u");
    await store.close();
    const client = await connect({
      natsServers: [`nats://127.0.0.1:${a.natsPort}`],
      ctrlUrls: [a.httpUrl],
      identity: admin,
    });
    try {
      const rooms = [];
      for (let r = 0; r < shape.rooms; r++) {
        const room = await client.createRoom(`bench.backup.${r}`, {
          encrypt: true,
          sign: true,
          persist: false,
        });
        const members = Array.from(
          { length: shape.membersPerRoom },
          (_, m) => others[(r * shape.membersPerRoom + m) % others.length].signPubHex,
        );
        await client.addMembers(room, members);
        rooms.push(room);
      }
      // Random, as sealed blobs are: nothing in the archive compresses them.
      const blob = new Uint8Array(shape.blobBytes);
      for (let i = 0; i < blob.length; i += 65536) {
        crypto.getRandomValues(blob.subarray(i, i + 65536));
      }
      for (let b = 0; b < shape.blobs; b++) await client.putBlob(rooms[b % rooms.length], blob);
    } finally {
      await client.close();
    }

    const t0 = performance.now();
    await Deno.copyFile(`${a.dataDir}/unibus.db`, `${root}/copy.db`);
    const fileCopyMs = Math.round(performance.now() - t0);
    const archive = `${root}/cp.unibus-backup`;
    const backupSqliteMs = await timed(["backup", "--out", archive, "--data-dir", a.dataDir]);
    const archiveBytes = (await Deno.stat(archive)).size;
    const restoreSqliteMs = await timed(["restore", "--in", archive, "--data-dir", `${root}/b`]);

    await Deno.mkdir(`${root}/c`);
    const c = await startServe({
      dataDir: `${root}/c`,
      extraArgs: [
        "--bus-auth",
        "enforce",
        "--store",
        "kv",
        "--internal-id-file",
        `${root}/c/internal.id`,
      ],
    });
    nodes.push(c);
    const kv = [
      "--store",
      "kv",
      "--internal-id-file",
      `${root}/c/internal.id`,
      "--nats-url",
      `nats://127.0.0.1:${c.natsPort}`,
    ];
    const restoreKvMs = await timed(["restore", "--in", archive, ...kv]);
    const backupKvMs = await timed(["backup", "--out", `${root}/kv.unibus-backup`, ...kv]);
    return {
      ...shape,
      archiveBytes,
      fileCopyMs,
      backupSqliteMs,
      restoreSqliteMs,
      restoreKvMs,
      backupKvMs,
    };
  } finally {
    for (const n of nodes) await n.stop();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}
