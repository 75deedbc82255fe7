/**
 * Opening the JetStream KV buckets and the object store of the KV
 * {@linkcode Store}, with a retry for the cold start:
 * on a cold cluster there is no JetStream meta leader yet, and a bucket
 * request sent before it exists is dropped, not queued. So each bucket is
 * opened with short per-attempt timeouts, retried within a bootstrap budget,
 * with a progress line every few seconds.
 *
 * @module
 */

import {
  jetstream,
  JetStreamApiError,
  type JetStreamManager,
  jetstreamManager,
} from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { type ObjectStore, Objm } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "../log.ts";
import { BLOB_OBJECT_STORE, KV_BUCKETS } from "./kv_names.ts";
import { StoreUnavailableError } from "./store.ts";

/** What bucket opening needs. */
export interface BucketOptions {
  nc: NatsConnection;
  /** 1 (a single node: not HA) or 3 (a cluster: quorum 2 of 3). */
  replicas: 1 | 3;
  /** Max age of the nonce bucket, ms. */
  nonceMaxAgeMs: number;
  /** Per-request timeout of store operations, ms. */
  opTimeoutMs: number;
  /** Total time to keep retrying while JetStream is not ready, ms. */
  bootstrapTimeoutMs: number;
  log?: Logger;
}

/** The opened buckets. */
export interface Buckets {
  kv: Record<keyof typeof KV_BUCKETS, KV>;
  /**
   * The same buckets read by direct get, which any current replica answers
   * (R3 only; null at R1): the store's reads fall back to it while a
   * bucket's leader is gone (see `KvStore` in kv.ts).
   */
  replicaKv: Record<keyof typeof KV_BUCKETS, KV> | null;
  blobs: ObjectStore;
  /** Each bucket's name (`UNIBUS_users`, …): its stream is `KV_<name>`. */
  names: Record<keyof typeof KV_BUCKETS, string>;
  /** The blob object store's name: its stream is `OBJ_<name>`. */
  blobsName: string;
  /**
   * Stream requests with the per-operation timeout, answered by each
   * stream's leader: key listings and blob reads without an ephemeral
   * consumer (see `KvStore` in kv.ts for why).
   */
  jsm: JetStreamManager;
}

/** Per attempt: short, so a request dropped by a cold cluster is re-sent soon. */
const ATTEMPT_TIMEOUT_MS = 5000;
const RETRY_PAUSE_MS = 1000;
const PROGRESS_EVERY_MS = 5000;

/**
 * Creates (or opens) every bucket, retrying until `bootstrapTimeoutMs`.
 * Throws {@linkcode StoreUnavailableError} when the budget runs out.
 *
 * @example
 * ```ts
 * const b = await openBuckets({ nc, replicas: 1, nonceMaxAgeMs: 120_000, opTimeoutMs: 2000, bootstrapTimeoutMs: 120_000 });
 * await b.kv.users.get("ab".repeat(32));
 * ```
 */
export async function openBuckets(opts: BucketOptions): Promise<Buckets> {
  const started = Date.now();
  const deadline = started + opts.bootstrapTimeoutMs;
  let lastProgress = started;
  // Bucket admin requests get the longer per-attempt timeout; data requests
  // use opTimeoutMs so that an unreachable store answers 503 quickly.
  const adminJs = jetstream(opts.nc, { timeout: ATTEMPT_TIMEOUT_MS });
  const js = jetstream(opts.nc, { timeout: opts.opTimeoutMs });
  if (opts.replicas === 1) {
    opts.log?.warn("control-plane KV at R1: a single copy, not HA", {
      replicas: 1,
      hint: "run three nodes with --kv-replicas 3 for a replicated control plane",
    });
  }

  const retry = async <T>(what: string, attempt: () => Promise<T>): Promise<T> => {
    for (let n = 1;; n++) {
      try {
        return await attempt();
      } catch (err) {
        const now = Date.now();
        if (now >= deadline) {
          throw new StoreUnavailableError(
            `cannot open ${what} within ${Math.round(opts.bootstrapTimeoutMs / 1000)} s: ${
              (err as Error).message
            }`,
            { cause: err },
          );
        }
        if (now - lastProgress >= PROGRESS_EVERY_MS) {
          lastProgress = now;
          opts.log?.info("waiting for JetStream to open the control-plane buckets", {
            bucket: what,
            attempts: n,
            elapsedS: Math.round((now - started) / 1000),
            budgetS: Math.round(opts.bootstrapTimeoutMs / 1000),
            error: (err as Error).message,
          });
        }
        await new Promise((r) => setTimeout(r, Math.min(RETRY_PAUSE_MS, deadline - now)));
      }
    }
  };

  const kvm = new Kvm(adminJs);
  const openKv = (name: string, extra: { ttl?: number } = {}) =>
    retry(name, async () => {
      try {
        await kvm.create(name, {
          replicas: opts.replicas,
          history: 1,
          storage: "file",
          // Direct get is allowed on the stream (R3) only for the store's
          // failover fallback; the store reads through the leader first
          // (kv.ts explains why).
          allow_direct: opts.replicas > 1,
          ...extra,
        });
      } catch (err) {
        // The bucket exists with another configuration (e.g. an operator
        // raised its replicas in place): use it as it is.
        if (!(err instanceof JetStreamApiError) || !/already in use/i.test(err.message)) {
          throw err;
        }
        opts.log?.warn("KV bucket exists with another configuration; using it as is", {
          bucket: name,
          error: err.message,
        });
      }
      if (opts.replicas > 1) await raiseInPlace(`KV_${name}`);
      // Reads go to the stream leader (allow_direct: false on this handle).
      return await new Kvm(js).open(name, { allow_direct: false });
    });

  // Buckets made by an R1 node (or before direct get was allowed) are
  // raised in place once the cluster can hold them: replicas to R3 (seed
  // 000 "Scale to R3", no data loss) and direct get for the fallback. A
  // raise that the cluster cannot place yet (fewer than three nodes up)
  // fails here and is retried within the bootstrap budget.
  const jsm = await jetstreamManager(opts.nc, { timeout: ATTEMPT_TIMEOUT_MS, checkAPI: false });
  // Streams raised by this open: they are used only once their new
  // replicas have caught up (a read right after the raise timed out while
  // the stream's group re-formed). A retry re-checks until then.
  const raised = new Set<string>();
  const raiseInPlace = async (stream: string) => {
    const info = await jsm.streams.info(stream);
    const cfg = info.config;
    if (cfg.num_replicas >= opts.replicas && cfg.allow_direct) {
      const peers = info.cluster?.replicas ?? [];
      if (
        raised.has(stream) &&
        (!info.cluster?.leader || peers.length < opts.replicas - 1 ||
          peers.some((p) => !p.current))
      ) throw new Error(`${stream} is catching up after its raise`);
      return;
    }
    raised.add(stream);
    await jsm.streams.update(stream, {
      ...cfg,
      num_replicas: Math.max(cfg.num_replicas, opts.replicas),
      allow_direct: true,
    });
    opts.log?.info("control-plane stream raised in place", {
      stream,
      replicasBefore: cfg.num_replicas,
      replicas: Math.max(cfg.num_replicas, opts.replicas),
      allowDirect: true,
    });
    throw new Error(`${stream} raised; waiting for its replicas`);
  };

  const kv = {} as Record<keyof typeof KV_BUCKETS, KV>;
  for (const [k, name] of Object.entries(KV_BUCKETS) as [keyof typeof KV_BUCKETS, string][]) {
    kv[k] = await openKv(name, k === "nonces" ? { ttl: opts.nonceMaxAgeMs } : {});
  }
  const blobs = await retry(BLOB_OBJECT_STORE, async () => {
    await new Objm(adminJs).create(BLOB_OBJECT_STORE, {
      replicas: opts.replicas,
      storage: "file",
    });
    if (opts.replicas > 1) await raiseInPlace(`OBJ_${BLOB_OBJECT_STORE}`);
    return await new Objm(js).open(BLOB_OBJECT_STORE);
  });
  let replicaKv: Buckets["kv"] | null = null;
  if (opts.replicas > 1) {
    replicaKv = {} as Buckets["kv"];
    for (const [k, name] of Object.entries(KV_BUCKETS) as [keyof typeof KV_BUCKETS, string][]) {
      replicaKv[k] = await new Kvm(js).open(name, { allow_direct: true });
    }
  }
  opts.log?.info("control-plane buckets open", {
    replicas: opts.replicas,
    ms: Date.now() - started,
  });
  const dataJsm = await jetstreamManager(opts.nc, { timeout: opts.opTimeoutMs, checkAPI: false });
  return {
    kv,
    replicaKv,
    blobs,
    names: { ...KV_BUCKETS },
    blobsName: BLOB_OBJECT_STORE,
    jsm: dataJsm,
  };
}
