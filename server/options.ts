/**
 * What `unibus serve` runs with, and the rules a value must meet before
 * anything starts. The CLI (`cli/serve.ts`) turns flags into an
 * {@linkcode UncheckedServeOptions}; {@linkcode checkServeOptions} refuses a
 * posture that would expose the bus and returns the checked
 * {@linkcode ServeOptions}; `server/serve.ts` checks again whatever it is
 * given, so a test or an embedding that calls `runServe` directly meets the
 * same refusals, with the same messages, as the command line. Nothing in
 * `server/` imports `cli/`.
 *
 * @module
 */

import { isLoopbackHost } from "../lib/net/address.ts";
import { CLUSTER_PASS_ENV, type ClusterOptions, clusterPassProblem } from "./cluster/options.ts";
import type { Posture } from "./http/health.ts";
import { type Limits, MAX_BLOB_BYTES } from "./limits.ts";

/** Certificate, key and the CA clients pin, for both planes. */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** The CA that clients pin; serve verifies its own connection with it. */
  caFile: string;
}

/** What every `serve` runs with, whatever its store, bus and topology. */
export interface ServeCommonOptions {
  httpHost: string;
  httpPort: number;
  natsHost: string;
  natsPort: number;
  dataDir: string;
  natsServerBin: string | null;
  serverName: string;
  /** Persisted internal service identity (load or create); null = ephemeral per process. */
  internalIdFile: string | null;
  /** Where security events are appended as JSON lines (lib/audit_log.ts). */
  auditLog: string;
  /** Both planes over TLS; null = plain, loopback only when the bus is enforced. */
  tls: TlsFiles | null;
  /** Accepts a non-loopback bind while the bus is open. */
  insecurePublic: boolean;
  maxBodyBytes: number;
  /** Port of nats-server's loopback monitor when UNIBUS_NATS_MONITOR opens it; null = env or 8222. */
  natsMonitorPort: number | null;
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

/** The control plane in a local SQLite file: this node's alone. */
export interface SqliteStoreOptions {
  store: "sqlite";
  dbPath: string;
  kvReplicas?: undefined;
  kvBootstrapTimeoutMs?: undefined;
}

/** The control plane in JetStream KV buckets on the data plane. */
export interface KvStoreOptions {
  store: "kv";
  /** Replicas of the buckets: 1 is a single copy, not HA. */
  kvReplicas: 1 | 3;
  /** How long to retry opening the buckets while JetStream is not ready. */
  kvBootstrapTimeoutMs: number;
  dbPath?: undefined;
}

/** Data-plane clients are not authenticated: development, on loopback unless accepted. */
export interface OpenBusOptions {
  busAuth: "off";
  /** An external NATS to use instead of the managed nats-server. */
  natsUrl: string | null;
  calloutIssuerFile: null;
}

/** Allowlist, nkey and per-subject ACL, through the managed nats-server's auth callout. */
export interface EnforcedBusOptions {
  busAuth: "enforce";
  /** Always the managed nats-server: its config carries the auth callout. */
  natsUrl: null;
  /** Shared auth callout issuer seed (load or create, 0600); null = one per process. */
  calloutIssuerFile: string | null;
}

/** One node. */
export interface SingleNodeOptions {
  cluster: null;
}

/** One node of a cluster: enforced, on the shared KV store, with the shared issuer. */
export interface ClusterNodeOptions {
  /** Routes and route TLS. */
  cluster: ClusterOptions;
  busAuth: "enforce";
  store: "kv";
  natsUrl: null;
  calloutIssuerFile: string;
}

/** Everything `serve` runs with, checked by {@linkcode checkServeOptions}. */
export type ServeOptions =
  & ServeCommonOptions
  & (SqliteStoreOptions | KvStoreOptions)
  & (OpenBusOptions | EnforcedBusOptions)
  & (SingleNodeOptions | ClusterNodeOptions);

/** The same fields before the rules are applied: what a caller assembles. */
export interface UncheckedServeOptions extends ServeCommonOptions {
  store: "sqlite" | "kv";
  /** The SQLite file (sqlite only). */
  dbPath?: string;
  /** kv only: 1 or 3. */
  kvReplicas?: number;
  /** kv only. */
  kvBootstrapTimeoutMs?: number;
  busAuth: "off" | "enforce";
  natsUrl: string | null;
  calloutIssuerFile: string | null;
  cluster: ClusterOptions | null;
}

/** Options that `serve` refuses to run with; the message is one line naming the flag. */
export class ServeOptionsError extends Error {
  override name = "ServeOptionsError";
}

/**
 * Applies the posture rules to `o` and returns it as {@linkcode ServeOptions};
 * throws {@linkcode ServeOptionsError} with the first rule broken. Files are
 * not read here: the route CA is also compared with the data-plane CA by
 * content when serve starts (server/cluster/route_tls.ts).
 *
 * @example
 * ```ts
 * const opts = checkServeOptions({ ...base, busAuth: "off", cluster: null, natsUrl: null, calloutIssuerFile: null });
 * opts.busAuth; // "off"
 * ```
 */
export function checkServeOptions(o: UncheckedServeOptions): ServeOptions {
  const problem = shapeProblem(o) ?? clusterProblem(o) ?? busProblem(o);
  if (problem) throw new ServeOptionsError(problem);
  const common: ServeCommonOptions = {
    httpHost: o.httpHost,
    httpPort: o.httpPort,
    natsHost: o.natsHost,
    natsPort: o.natsPort,
    dataDir: o.dataDir,
    natsServerBin: o.natsServerBin,
    serverName: o.serverName,
    internalIdFile: o.internalIdFile,
    auditLog: o.auditLog,
    tls: o.tls,
    insecurePublic: o.insecurePublic,
    maxBodyBytes: o.maxBodyBytes,
    natsMonitorPort: o.natsMonitorPort,
    limits: o.limits,
    jetstreamSync: o.jetstreamSync ?? "always",
  };
  const kv = () => ({
    store: "kv" as const,
    kvReplicas: o.kvReplicas as 1 | 3,
    kvBootstrapTimeoutMs: o.kvBootstrapTimeoutMs!,
  });
  if (o.cluster) {
    return {
      ...common,
      ...kv(),
      busAuth: "enforce",
      natsUrl: null,
      calloutIssuerFile: o.calloutIssuerFile!,
      cluster: o.cluster,
    };
  }
  const store: SqliteStoreOptions | KvStoreOptions = o.store === "kv"
    ? kv()
    : { store: "sqlite", dbPath: o.dbPath! };
  const bus: OpenBusOptions | EnforcedBusOptions = o.busAuth === "enforce"
    ? { busAuth: "enforce", natsUrl: null, calloutIssuerFile: o.calloutIssuerFile }
    : { busAuth: "off", natsUrl: o.natsUrl, calloutIssuerFile: null };
  return { ...common, ...store, ...bus, cluster: null };
}

// What the types say, checked again for a caller the compiler did not see
// (JavaScript, a cast, a parsed file).
function shapeProblem(o: UncheckedServeOptions): string | null {
  if (o.store !== "sqlite" && o.store !== "kv") {
    return `store: "${o.store}" is not a store (sqlite or kv)`;
  }
  if (o.store === "sqlite" && !o.dbPath) return "store sqlite needs dbPath, the SQLite file";
  if (o.store === "kv" && o.kvReplicas !== 1 && o.kvReplicas !== 3) {
    return `kvReplicas: ${o.kvReplicas} is not 1 or 3`;
  }
  if (
    o.store === "kv" &&
    !(Number.isSafeInteger(o.kvBootstrapTimeoutMs) && o.kvBootstrapTimeoutMs! >= 1000)
  ) {
    return "kvBootstrapTimeoutMs must be whole milliseconds, at least 1000";
  }
  if (o.busAuth !== "off" && o.busAuth !== "enforce") {
    return `busAuth: "${o.busAuth}" is not off or enforce`;
  }
  return null;
}

function clusterProblem(o: UncheckedServeOptions): string | null {
  const c = o.cluster;
  if (c === null) return null;
  // The route secret is written into a quoted config string and guards the
  // route port: a short or unquotable one is refused before anything starts
  // (one from a file is checked when it is read, server/cluster/secrets.ts).
  if (c.pass.kind !== "file") {
    const problem = clusterPassProblem(c.pass.value);
    const where = c.pass.kind === "env" ? CLUSTER_PASS_ENV : "--cluster-pass";
    if (problem) return `${where}: ${problem}`;
  }
  const routeHosts = c.routes.map((r) => {
    try {
      return new URL(r).hostname.replace(/^\[|\]$/g, "");
    } catch {
      return r;
    }
  });
  const exposed = [
    !isLoopbackHost(c.host) ? `--cluster-host ${c.host}` : null,
    ...routeHosts.filter((h) => !isLoopbackHost(h)).map((h) => `route to ${h}`),
  ].filter((x) => x !== null);
  // The route layer carries every message of every room and the secret
  // itself: off the host it is mutual TLS or nothing.
  if (exposed.length > 0 && c.routeTls === null) {
    return `${
      exposed[0]
    } is not loopback: routes off this host need --route-tls-cert, --route-tls-key and --route-tls-ca`;
  }
  // Every node must enforce: routes carry every message to every node, so
  // one open node would open the whole bus.
  if (o.busAuth !== "enforce") {
    return "a clustered node needs --bus-auth enforce: one open node would open the whole cluster";
  }
  // A node on a local SQLite file would serve its own allowlist and rooms,
  // not the cluster's.
  if (o.store !== "kv") {
    return "a clustered node needs --store kv: a local SQLite store is not shared with the other nodes";
  }
  // Any node may answer any node's callout, and a nats-server accepts only
  // answers signed by the issuer in its own config: one issuer for all.
  if (o.calloutIssuerFile === null) {
    return "a clustered node needs --callout-issuer-file FILE, the same file on every node";
  }
  return null;
}

const MiB = 1024 * 1024;

function busProblem(o: UncheckedServeOptions): string | null {
  if (o.calloutIssuerFile !== null && o.busAuth !== "enforce") {
    return "--callout-issuer-file needs --bus-auth enforce";
  }
  // Bounded above by the blob limit: JSON bodies (changes, sealed keys) are
  // kilobytes, and every large body is held whole in memory until its
  // signature is checked, so the upload gate's bound on what a flood of bad
  // signatures can make the node hold, --max-uploads × 8 MiB, must not grow
  // with a mistyped value (at 1 GiB: 16 GiB).
  if (!(o.maxBodyBytes >= 1024 && o.maxBodyBytes <= MAX_BLOB_BYTES)) {
    return `--max-body: must be between 1KiB and ${MAX_BLOB_BYTES / MiB}MiB (the blob limit)`;
  }
  // The route port must only ever open to a node's certificate: with the
  // data-plane CA as route CA, any client certificate would do. The same
  // content under another path is refused at start (route_tls.ts).
  if (o.cluster?.routeTls && o.tls && o.cluster.routeTls.caFile === o.tls.caFile) {
    return "--route-tls-ca must not be the data-plane CA (--tls-ca): use a separate route CA";
  }
  if (o.busAuth === "enforce" && o.natsUrl !== null) {
    return "--bus-auth enforce needs the managed nats-server (its config carries the auth callout); drop --nats-url";
  }
  const exposed = [
    !isLoopbackHost(o.httpHost) ? `--http-addr ${o.httpHost}` : null,
    o.natsUrl === null && !isLoopbackHost(o.natsHost) ? `--nats-host ${o.natsHost}` : null,
  ].filter((x) => x !== null);
  // Keys, signatures and the allowlist must not cross a network in clear,
  // whatever else is configured.
  if (o.busAuth === "enforce" && exposed.length > 0 && o.tls === null) {
    return `${
      exposed.join(" and ")
    } is not loopback: a public bind needs --tls-cert, --tls-key and --tls-ca`;
  }
  // With auth off, whoever reaches a port can publish, subscribe and call the
  // control plane as anyone. That is fine on loopback for development and an
  // open door anywhere else, so a public bind needs an explicit opt-in.
  if (o.busAuth === "off" && !o.insecurePublic && exposed.length > 0) {
    return `${exposed.join(" and ")} is not loopback: with --bus-auth off anyone who reaches it ` +
      `has full access; bind to 127.0.0.1, or pass --insecure-public to accept that`;
  }
  return null;
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
