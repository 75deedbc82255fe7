/**
 * What one user, one room and the whole node may consume. Without these, one
 * user could take the node's JetStream storage (each persisted room reserved
 * 1 GiB, and after one user made 59 rooms every persisted room of every user
 * failed) or its disk and memory (any number of 8 MiB blobs, any number of
 * large uploads at once). `serve`'s flags set them; the defaults are safe
 * for a small node.
 *
 * @module
 */

import { statfs } from "node:fs/promises";

/** Per-user quotas, per-room and node limits. */
export interface Limits {
  /** Rooms one user may have created (and not deleted). */
  roomsPerUser: number;
  /** Of those, persisted rooms (each reserves `roomStreamMaxBytes` of JetStream). */
  persistedRoomsPerUser: number;
  /** Blobs one user may have uploaded into rooms that still exist. */
  blobsPerUser: number;
  /** Total bytes of those blobs. */
  blobBytesPerUser: number;
  /** Largest JetStream stream of one persisted room; oldest messages go first. */
  roomStreamMaxBytes: number;
  /** JetStream's `max_file_store`; null = sized from the data disk at start. */
  jetStreamMaxStore: number | null;
  /**
   * Large request bodies (over 64 KiB, or of unknown length) one user may
   * send at once from one source address (server/http/upload_gate.ts).
   */
  uploadsPerUser: number;
  /** Large request bodies one source address (IPv6: its /64) may send at once, all keys. */
  uploadsPerSource: number;
  /** Large request bodies the node reads at once, all users together. */
  uploadsTotal: number;
  /**
   * NATS connections one user may hold at once (counted over the cluster's
   * admitted sessions): a runaway agent reconnecting in a loop cannot take
   * the node's connections, or its callout's time, from everyone else.
   */
  connectionsPerUser: number;
  /**
   * Subscriptions one connection may hold (nats-server's `max_subscriptions`,
   * for every connection of the node, serve's own included): a runaway
   * client subscribing in a loop is refused past it ("maximum subscriptions
   * exceeded") instead of growing the server's interest graph without bound.
   */
  subscriptionsPerConnection: number;
}

const MiB = 1024 * 1024;

/** The largest blob (and so the largest request body) the node accepts: 8 MiB. */
export const MAX_BLOB_BYTES = 8 * MiB;

/** The defaults of `serve`'s limit flags. */
export const DEFAULT_LIMITS: Readonly<Limits> = {
  roomsPerUser: 100,
  persistedRoomsPerUser: 10,
  blobsPerUser: 1000,
  blobBytesPerUser: 256 * MiB,
  roomStreamMaxBytes: 64 * MiB,
  jetStreamMaxStore: null,
  uploadsPerUser: 2,
  // A quarter of the node's places: one source can never fill the node, and
  // a user uploading a few files at once from one machine is not held back.
  uploadsPerSource: 4,
  uploadsTotal: 16,
  connectionsPerUser: 100,
  // A client holds one per room it listens to, one inbox and one for the
  // server's notices: thousands of rooms per connection before this bites.
  subscriptionsPerConnection: 4096,
};

/** The share of the data disk's free space JetStream may reserve when not set by flag. */
export const JETSTREAM_DISK_SHARE = 0.5;

/** The smallest room stream: one NATS message of the largest size (`max_payload`). */
export const MIN_ROOM_STREAM_BYTES = MiB;

/** Below this, JetStream is not worth starting: not even a handful of rooms fit. */
export const MIN_JETSTREAM_STORE = 256 * MiB;

/**
 * Bytes of the files under `dir` (0 when it does not exist), so that data
 * JetStream already holds counts as its own when its store is sized.
 *
 * @example
 * ```ts
 * const used = await bytesUnder("/var/lib/unibus/jetstream");
 * ```
 */
export async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  const walk = async (path: string): Promise<void> => {
    let entries: AsyncIterable<Deno.DirEntry>;
    try {
      entries = Deno.readDir(path);
      for await (const e of entries) {
        const p = `${path}/${e.name}`;
        if (e.isDirectory) await walk(p);
        else if (e.isFile) total += (await Deno.lstat(p).catch(() => ({ size: 0 }))).size;
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  };
  await walk(dir);
  return total;
}

/**
 * JetStream's `max_file_store` for a node whose streams live in `jetStreamDir`
 * on the disk of `dataDir`: {@linkcode JETSTREAM_DISK_SHARE} of what is free
 * plus what JetStream already holds there.
 *
 * Sized from the disk rather than left to nats-server (which takes 75% of the
 * free space) so the operator sees the figure in serve's log and can pin it
 * with `--jetstream-max-store`. Counting the existing data keeps a restart on
 * a fuller disk from shrinking the store below what is stored: nats-server
 * then refuses to load streams ("insufficient storage resources").
 *
 * @example
 * ```ts
 * const maxStore = await jetStreamStoreFromDisk("/var/lib/unibus", "/var/lib/unibus/jetstream");
 * ```
 */
export async function jetStreamStoreFromDisk(
  dataDir: string,
  jetStreamDir: string,
): Promise<{ maxStore: number; freeBytes: number; usedBytes: number }> {
  const fs = await statfs(dataDir);
  const freeBytes = Number(fs.bavail) * Number(fs.bsize);
  const usedBytes = await bytesUnder(jetStreamDir);
  const maxStore = Math.floor(JETSTREAM_DISK_SHARE * freeBytes) + usedBytes;
  return { maxStore, freeBytes, usedBytes };
}
