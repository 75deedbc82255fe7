/**
 * Whether the control plane's storage is there and readable, for
 * `/healthz`: every KV bucket stream and the blob object store (on KV), or
 * the SQLite file (a read). Without it, a deleted `KV_UNIBUS_users` left
 * every user refused while `/healthz` still said "ok".
 *
 * Cached for a moment, so that a monitor polling `/healthz` (or anyone
 * hammering it: it needs no signature) costs one round of stream info every
 * couple of seconds at most.
 *
 * @module
 */

import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Store } from "../../lib/store/store.ts";

/** How long one check's answer is reused. */
export const CONTROL_PLANE_CHECK_CACHE_MS = 2000;

/** What is wrong with the control plane's storage: one line per missing or unreadable part. */
export type ControlPlaneCheck = () => Promise<string[]>;

/**
 * A check of the KV control plane: stream info of each of `streams` over
 * `nc` (serve's connection in the control plane's account).
 *
 * @example
 * ```ts
 * const check = kvControlPlaneCheck(conn.nc, controlPlaneStreams());
 * await check(); // [] when all are there, else e.g. ["KV_UNIBUS_users: stream not found"]
 * ```
 */
export function kvControlPlaneCheck(nc: NatsConnection, streams: string[]): ControlPlaneCheck {
  return cached(async () => {
    const jsm = await jetstreamManager(nc, { checkAPI: false });
    const found = await Promise.all(streams.map((name) =>
      jsm.streams.info(name).then(
        () => null,
        (err) => `${name}: ${(err as Error).message}`,
      )
    ));
    return found.filter((x): x is string => x !== null);
  });
}

/**
 * A check of the SQLite control plane: one read of the allowlist.
 *
 * @example
 * ```ts
 * const check = sqliteControlPlaneCheck(store, "/var/lib/unibus/unibus.db");
 * ```
 */
export function sqliteControlPlaneCheck(store: Store, path: string): ControlPlaneCheck {
  return cached(async () => {
    try {
      await store.getUser("00".repeat(32));
      return [];
    } catch (err) {
      return [`${path}: ${(err as Error).message}`];
    }
  });
}

function cached(check: () => Promise<string[]>): ControlPlaneCheck {
  let last: { at: number; answer: Promise<string[]> } | null = null;
  return () => {
    const now = Date.now();
    if (!last || now - last.at > CONTROL_PLANE_CHECK_CACHE_MS) {
      last = { at: now, answer: check().catch((err) => [`control plane: ${err.message}`]) };
    }
    return last.answer;
  };
}
