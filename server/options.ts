/**
 * What `unibus serve` runs with. The CLI (`cli/serve.ts`) parses and validates
 * flags into it; `server/serve.ts` runs it; nothing in `server/` imports `cli/`.
 *
 * @module
 */

import type { Limits } from "./limits.ts";
import type { ClusterOptions } from "./cluster/options.ts";
import type { Posture } from "./http/health.ts";

/** Everything `serve` runs with, validated. */
export interface ServeOptions {
  httpHost: string;
  httpPort: number;
  natsHost: string;
  natsPort: number;
  dataDir: string;
  dbPath: string;
  /** Control-plane backend: the SQLite file, or JetStream KV on the data plane. */
  store: "sqlite" | "kv";
  /** Replicas of the KV buckets (kv only): 1 is a single copy, not HA. */
  kvReplicas: 1 | 3;
  /** How long to retry opening the KV buckets while JetStream is not ready. */
  kvBootstrapTimeoutMs: number;
  /** An external NATS to use instead of the managed nats-server. */
  natsUrl: string | null;
  natsServerBin: string | null;
  serverName: string;
  busAuth: "off" | "enforce";
  /** Persisted internal service identity (load or create); null = ephemeral per process. */
  internalIdFile: string | null;
  /** Both planes over TLS; `caFile` is the CA clients pin. */
  tls: { certFile: string; keyFile: string; caFile: string } | null;
  insecurePublic: boolean;
  maxBodyBytes: number;
  /** Port of nats-server's loopback monitor when UNIBUS_NATS_MONITOR opens it; null = env or 8222. */
  natsMonitorPort: number | null;
  /** Shared auth callout issuer seed (load or create, 0600); null = one per process. */
  calloutIssuerFile: string | null;
  /** Routes and route TLS; null = a single node. */
  cluster: ClusterOptions | null;
  /** Quotas and resource limits (server/limits.ts). */
  limits: Limits;
  /**
   * When JetStream writes reach the disk (nats-server `sync_interval`):
   * "always" (the default: each write is flushed before it is
   * acknowledged) or every this many ms. With an interval, a power loss of
   * every node at once can lose writes already acknowledged: a revoke, a
   * member removal, a stored message.
   */
  jetstreamSync?: "always" | number;
}

/**
 * What the node enforces, as /healthz and the cluster's posture gossip report it.
 *
 * @example
 * ```ts
 * servePosture(opts); // { auth: "enforce", acl: true, tls: true, store: "kv", replicas: 3 }
 * ```
 */
export function servePosture(opts: ServeOptions): Posture {
  return {
    auth: opts.busAuth,
    acl: opts.busAuth === "enforce",
    tls: opts.tls !== null,
    store: opts.store,
    replicas: opts.store === "kv" ? opts.kvReplicas : 1,
  };
}
