/**
 * serve's store stage: the control-plane store its options name, opened
 * through `lib/store/mod.ts`, instrumented for /metrics, and checked once for
 * stored rooms whose subject the grammar refuses.
 *
 * @module
 */

import type { Logger } from "../lib/log.ts";
import type { InternalConnection } from "../lib/nats/internal_connection.ts";
import { openStore } from "../lib/store/mod.ts";
import type { Store } from "../lib/store/store.ts";
import type { Lifecycle } from "./lifecycle.ts";
import type { Metrics } from "./metrics.ts";
import type { ServeOptions } from "./options.ts";
import { reportInexpressibleRooms } from "./rooms/inexpressible.ts";

// The one place in server/ that names the KV backend's streams: health
// checks and the cluster monitor read their state.
export { controlPlaneStreams } from "../lib/store/mod.ts";

/** What opening the store needs from the stages before it. */
export interface StoreStageDeps {
  /** serve's control-plane connection (the KV store's only identity). */
  conn: InternalConnection;
  metrics: Metrics;
  /** Resolves when serve is told to stop; ends a wait for the KV buckets. */
  stopSignal: Promise<Deno.Signal>;
  /** Whether a majority of the cluster's nodes is alive (false on a single node). */
  majorityAlive: () => boolean | Promise<boolean>;
}

/**
 * Opens the store of `opts.store` and records its closing in `life`.
 *
 * @example
 * ```ts
 * const store = await openControlPlaneStore(opts, { conn, metrics, stopSignal, majorityAlive }, life, log);
 * ```
 */
export async function openControlPlaneStore(
  opts: ServeOptions,
  deps: StoreStageDeps,
  life: Lifecycle,
  log: Logger,
): Promise<Store> {
  if (opts.store === "sqlite") {
    const store = deps.metrics.instrumentStore(
      await openStore({ kind: "sqlite", path: opts.dbPath }),
    );
    life.started("store", () => store.close());
    await reportInexpressibleRooms(store, log.child("rooms"));
    return store;
  }
  // The internal connection owns the buckets: it is the only identity
  // with rights on `$KV.UNIBUS_*`, `$O.*` and their `$JS.API` subjects
  // (bus users' ACLs name only their rooms and inbox).
  const opening = openStore({
    kind: "kv",
    nc: deps.conn.nc,
    replicas: opts.kvReplicas,
    bootstrapTimeoutMs: opts.kvBootstrapTimeoutMs,
    // A replica answers while a bucket's leader is being re-elected,
    // never on a node without a live majority (lib/store/kv.ts).
    replicaReads: deps.majorityAlive,
    log: log.child("kv"),
  });
  // A node waiting for its peers (up to the bootstrap budget) still
  // stops at once when told to, instead of after the budget runs out.
  const interrupted = deps.stopSignal.then((sig) => {
    throw new Error(`stopped by ${sig} while opening the control-plane buckets`);
  });
  opening.catch(() => {});
  interrupted.catch(() => {});
  const store = deps.metrics.instrumentStore(await Promise.race([opening, interrupted]));
  life.started("store", () => store.close());
  // A report, never a reason to stop: a node that just rejoined opens its
  // buckets before their streams have caught up, and a read may still fail
  // then ("JetStream system temporarily unavailable").
  reportInexpressibleRooms(store, log.child("rooms")).catch((err) =>
    log.warn("stored rooms' subjects not checked at start", { error: err })
  );
  return store;
}
