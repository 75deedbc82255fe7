/**
 * `unibus serve`: flags turned into server/options.ts's ServeOptions (whose
 * posture rules are checked there), and the hand-over to server/serve.ts.
 *
 * @module
 */

import { auditLogIn, openAuditLog } from "../lib/audit_log.ts";
import { createLogger } from "../lib/log.ts";
import { parseHostPort, parsePort } from "../lib/net/address.ts";
import { type OptionTable, parseCommandArgs, renderHelp, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import { parseKvReplicas } from "./kv_target.ts";
import { CLUSTER_SERVE_OPTIONS, parseClusterArgs } from "./serve_cluster.ts";
import {
  checkServeOptions,
  type ServeOptions,
  ServeOptionsError,
  type TlsFiles,
  type UncheckedServeOptions,
} from "../server/options.ts";
import {
  DEFAULT_LIMITS,
  type Limits,
  MAX_BLOB_BYTES,
  MIN_JETSTREAM_STORE,
  MIN_ROOM_STREAM_BYTES,
} from "../server/limits.ts";

const MiB = 1024 * 1024;

// The limit flags, by Limits field: flag name, unit, help text.
const LIMIT_FLAGS: Array<[keyof Limits, string, "count" | "bytes", string]> = [
  [
    "connectionsPerUser",
    "max-connections-per-user",
    "count",
    "NATS connections one user may hold at once; the next login is refused",
  ],
  [
    "subscriptionsPerConnection",
    "max-subscriptions-per-connection",
    "count",
    "subscriptions one NATS connection may hold; the next is refused",
  ],

  ["roomsPerUser", "max-rooms-per-user", "count", "rooms one user may have created"],
  [
    "persistedRoomsPerUser",
    "max-persisted-rooms-per-user",
    "count",
    "of those, persisted rooms (each reserves --room-stream-max-bytes of JetStream)",
  ],
  ["blobsPerUser", "max-blobs-per-user", "count", "blobs one user may hold"],
  ["blobBytesPerUser", "max-blob-bytes-per-user", "bytes", "total size of one user's blobs"],
  [
    "roomStreamMaxBytes",
    "room-stream-max-bytes",
    "bytes",
    "history one persisted room keeps, oldest dropped first (at least 1MiB; a 64-byte message stores ~340 bytes alone, ~69 packed)",
  ],
  [
    "jetStreamMaxStore",
    "jetstream-max-store",
    "bytes",
    "JetStream file store of the managed nats-server",
  ],
  [
    "uploadsPerUser",
    "max-uploads-per-user",
    "count",
    "request bodies over 64 KiB one user may send at once from one address",
  ],
  [
    "uploadsPerSource",
    "max-uploads-per-source",
    "count",
    "request bodies over 64 KiB one address (IPv6: its /64) may send at once",
  ],
  ["uploadsTotal", "max-uploads", "count", "request bodies over 64 KiB read at once, in total"],
];

function byteText(n: number): string {
  return n % MiB === 0 ? `${n / MiB}MiB` : String(n);
}

const UNITS: Record<string, number> = { "": 1, KiB: 1024, MiB, GiB: 1024 * MiB, TiB: 1024 ** 4 };

/**
 * A byte count as given on the command line: digits with an optional binary
 * unit (`KiB`, `MiB`, `GiB`, `TiB`). Throws on anything else.
 *
 * @example
 * ```ts
 * parseByteSize("64MiB"); // 67108864
 * ```
 */
export function parseByteSize(text: string): number {
  const m = /^(\d{1,15})(KiB|MiB|GiB|TiB)?$/.exec(text);
  const n = m ? Number(m[1]) * UNITS[m[2] ?? ""] : NaN;
  if (!Number.isSafeInteger(n)) {
    throw new Error(`"${text}" is not a byte count (digits, optionally KiB, MiB, GiB or TiB)`);
  }
  return n;
}

/** The option table of `serve`: the parser and `--help` both read it. */
export const SERVE_OPTIONS: OptionTable = {
  "http-addr": {
    type: "string",
    valueName: "HOST:PORT",
    description: "control plane (HTTP) listen address",
    defaultText: "127.0.0.1:8470",
  },
  "nats-host": {
    type: "string",
    valueName: "HOST",
    description: "managed nats-server client listen host",
    defaultText: "127.0.0.1",
  },
  "nats-port": {
    type: "string",
    valueName: "PORT",
    description: "managed nats-server client port",
    defaultText: "4250",
  },
  "data-dir": {
    type: "string",
    valueName: "DIR",
    description: "state: SQLite DB, JetStream store, nats-server config and pid files",
    defaultText: "./local_files",
  },
  db: {
    type: "string",
    valueName: "PATH",
    description: "SQLite file",
    defaultText: "DIR/unibus.db",
  },
  store: {
    type: "string",
    valueName: "sqlite|kv",
    description: "control-plane store: the SQLite file, or JetStream KV (replicable)",
    defaultText: "sqlite",
  },
  "kv-replicas": {
    type: "string",
    valueName: "1|3",
    description: "replicas of the KV buckets (--store kv); 1 is a single copy, not HA",
    defaultText: "1",
  },
  "kv-bootstrap-timeout": {
    type: "string",
    valueName: "SECONDS",
    description: "how long to retry opening the KV buckets while JetStream is not ready",
    defaultText: "120",
  },
  "nats-url": {
    type: "string",
    valueName: "URL",
    description: "use this external NATS (with JetStream) instead of a managed nats-server",
  },
  "nats-server-bin": {
    type: "string",
    valueName: "PATH",
    description:
      "nats-server executable (else UNIBUS_NATS_SERVER, the artifact's embedded copy, .tools/, PATH)",
  },
  "server-name": {
    type: "string",
    valueName: "NAME",
    description: "nats-server name",
    defaultText: "unibus-<hostname>",
  },
  "bus-auth": {
    type: "string",
    valueName: "off|enforce",
    description: "data-plane client authentication: enforce = allowlist + nkey + per-subject ACL",
    defaultText: "off",
  },
  "audit-log": {
    type: "string",
    valueName: "FILE",
    description: "append security events here as JSON lines (0600); they also go to stdout " +
      'marked "audit": true',
    defaultText: "DATA_DIR/audit.log",
  },
  "internal-id-file": {
    type: "string",
    valueName: "PATH",
    description: "persist the internal service identity here (created 0600 if missing)",
    defaultText: "ephemeral",
  },
  "tls-cert": {
    type: "string",
    valueName: "PATH",
    description: "certificate (PEM) for both planes: NATS TLS and HTTPS",
  },
  "tls-key": { type: "string", valueName: "PATH", description: "private key (PEM) of --tls-cert" },
  "tls-ca": {
    type: "string",
    valueName: "PATH",
    description: "CA (PEM) that clients pin; serve verifies its own connection with it",
  },
  "insecure-public": {
    type: "boolean",
    description:
      "allow a non-loopback bind while --bus-auth is off (anyone reaching it has full access)",
  },
  "max-body": {
    type: "string",
    valueName: "BYTES",
    description: `largest control-plane request body but a blob's (1KiB to ${
      byteText(MAX_BLOB_BYTES)
    })`,
    defaultText: "1MiB",
  },
  "jetstream-sync": {
    type: "string",
    valueName: "always|DURATION",
    description:
      "when JetStream writes reach the disk: always (before the ack), or every DURATION (e.g. 2m; a power loss of every node then loses acknowledged writes)",
    defaultText: "always",
  },
  "nats-monitor-port": {
    type: "string",
    valueName: "PORT",
    description: "nats-server monitoring port (127.0.0.1 only; opened by UNIBUS_NATS_MONITOR=1)",
    defaultText: "UNIBUS_NATS_MONITOR_PORT, else 8222",
  },
  "callout-issuer-file": {
    type: "string",
    valueName: "PATH",
    description: "auth callout issuer seed, the same file on every node (created 0600 if missing)",
    defaultText: "one per process",
  },
  ...CLUSTER_SERVE_OPTIONS,
  ...Object.fromEntries(LIMIT_FLAGS.map(([field, flag, unit, description]) => {
    const d = DEFAULT_LIMITS[field];
    return [flag, {
      type: "string" as const,
      valueName: unit === "bytes" ? "BYTES" : "N",
      description,
      defaultText: d === null
        ? "half the data disk's free space"
        : unit === "bytes"
        ? byteText(d)
        : String(d),
    }];
  })),
};

/** The `serve --help` text. */
export const SERVE_HELP = renderHelp(
  "unibus serve [options]",
  "Runs the control plane (HTTP) and the data plane (a managed nats-server with JetStream).",
  SERVE_OPTIONS,
);

function hostnameOrLocal(): string {
  try {
    return Deno.hostname();
  } catch {
    return "local";
  }
}

/** Runs `parse`, turning its error into a usage error that names `flag`. */
function forFlag<T>(flag: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new UsageError(`--${flag}: ${(err as Error).message}`);
  }
}

type FlagText = (name: string) => string | undefined;

/** The limit flags over {@linkcode DEFAULT_LIMITS}, and how they bound each other. */
function parseLimitFlags(str: FlagText): Limits {
  const limits: Limits = { ...DEFAULT_LIMITS };
  for (const [field, flag, unit] of LIMIT_FLAGS) {
    const text = str(flag);
    if (text === undefined) continue;
    const n = forFlag(flag, () => {
      if (unit === "bytes") return parseByteSize(text);
      if (!/^\d{1,9}$/.test(text)) throw new Error(`"${text}" is not a count`);
      return Number(text);
    });
    // Zero would refuse every create or upload: say so instead of starting a
    // node nobody can use.
    if (n < 1) throw new UsageError(`--${flag}: must be at least 1`);
    limits[field] = n;
  }
  if (limits.jetStreamMaxStore !== null && limits.jetStreamMaxStore < MIN_JETSTREAM_STORE) {
    throw new UsageError(
      `--jetstream-max-store: must be at least ${byteText(MIN_JETSTREAM_STORE)}`,
    );
  }
  // A stream smaller than one NATS message (max_payload, 1 MiB) would refuse
  // a full packet and keep only a few: a room that persists in name only.
  if (limits.roomStreamMaxBytes < MIN_ROOM_STREAM_BYTES) {
    throw new UsageError(
      `--room-stream-max-bytes: must be at least ${byteText(MIN_ROOM_STREAM_BYTES)}`,
    );
  }
  if (limits.jetStreamMaxStore !== null && limits.roomStreamMaxBytes > limits.jetStreamMaxStore) {
    throw new UsageError("--room-stream-max-bytes: must not exceed --jetstream-max-store");
  }
  // Left at its default, the per-source bound follows a smaller --max-uploads.
  if (str("max-uploads-per-source") === undefined) {
    limits.uploadsPerSource = Math.min(limits.uploadsPerSource, limits.uploadsTotal);
  }
  if (limits.uploadsPerSource > limits.uploadsTotal) {
    throw new UsageError("--max-uploads-per-source: must not exceed --max-uploads");
  }
  if (limits.uploadsPerUser > limits.uploadsPerSource) {
    throw new UsageError(
      "--max-uploads-per-user: must not exceed --max-uploads-per-source (or --max-uploads)",
    );
  }
  return limits;
}

/** `--tls-cert`, `--tls-key` and `--tls-ca`: all three, or none. */
function parseTlsFlags(str: FlagText): TlsFiles | null {
  const [certFile, keyFile, caFile] = [str("tls-cert"), str("tls-key"), str("tls-ca")];
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together");
  }
  if (certFile !== undefined && caFile === undefined) {
    throw new UsageError("--tls-cert needs --tls-ca, the CA that clients pin");
  }
  if (certFile === undefined && caFile !== undefined) {
    throw new UsageError("--tls-ca without --tls-cert has nothing to pin");
  }
  return certFile && keyFile && caFile ? { certFile, keyFile, caFile } : null;
}

/** `--jetstream-sync`: "always", or a duration up to 24h in ms. */
function parseJetstreamSync(text: string): "always" | number {
  if (text === "always") return "always";
  const m = /^(\d{1,6})(ms|s|m|h)$/.exec(text);
  const ms = m ? Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2]]! : NaN;
  if (!(ms >= 1 && ms <= 24 * 3_600_000)) {
    throw new UsageError(
      `--jetstream-sync: "${text}" is not "always" or a duration such as 500ms, 10s, 2m (at most 24h)`,
    );
  }
  return ms;
}

/**
 * Turns `serve`'s flags into {@linkcode ServeOptions}: each flag's syntax
 * here, the posture rules in `checkServeOptions` (server/options.ts), the
 * same rules `runServe` applies to any caller. Throws {@linkcode UsageError}
 * with a one-line message on any mistake.
 *
 * @example
 * ```ts
 * const opts = parseServeArgs(["--http-addr", "127.0.0.1:0", "--nats-port", "4251"]);
 * opts.natsPort; // 4251
 * ```
 */
export function parseServeArgs(
  argv: string[],
  env: Record<string, string | undefined> = Deno.env.toObject(),
): ServeOptions & { help: boolean } {
  const { values: v } = parseCommandArgs(argv, SERVE_OPTIONS, { maxPositionals: 0 });
  const str = (name: string) => v[name] as string | undefined;

  const http = forFlag("http-addr", () => parseHostPort(str("http-addr") ?? "127.0.0.1:8470"));
  const natsHost = str("nats-host") ?? "127.0.0.1";
  if (!natsHost || /[\s"'\\$]/.test(natsHost)) {
    throw new UsageError(`--nats-host: "${natsHost}" is not a host name or address`);
  }
  const natsPort = forFlag("nats-port", () => parsePort(str("nats-port") ?? "4250"));
  if (natsPort === 0) throw new UsageError("--nats-port: must be 1-65535");

  const dataDir = str("data-dir") ?? "./local_files";
  if (!dataDir) throw new UsageError("--data-dir: must not be empty");

  const store = str("store") ?? "sqlite";
  if (store !== "sqlite" && store !== "kv") {
    throw new UsageError(`--store: "${store}" is not a store (sqlite or kv)`);
  }
  const kvReplicas = parseKvReplicas(str("kv-replicas"));
  const bootstrapText = str("kv-bootstrap-timeout") ?? "120";
  if (!/^\d{1,5}$/.test(bootstrapText) || Number(bootstrapText) < 1) {
    throw new UsageError(`--kv-bootstrap-timeout: "${bootstrapText}" must be whole seconds, >= 1`);
  }
  if (store === "sqlite" && (str("kv-replicas") ?? str("kv-bootstrap-timeout")) !== undefined) {
    throw new UsageError("--kv-replicas and --kv-bootstrap-timeout need --store kv");
  }

  const busAuth = str("bus-auth") ?? "off";
  if (busAuth !== "off" && busAuth !== "enforce") {
    throw new UsageError(`--bus-auth: "${busAuth}" is not off or enforce`);
  }
  const cluster = parseClusterArgs(v, env);

  const natsUrl = str("nats-url") ?? null;
  if (natsUrl !== null) {
    forFlag("nats-url", () => {
      const u = new URL(natsUrl);
      if (!["nats:", "tls:"].includes(u.protocol)) {
        throw new Error(`"${natsUrl}" must be a nats:// or tls:// URL`);
      }
    });
  }

  const serverName = str("server-name") ??
    `unibus-${hostnameOrLocal().replace(/[^A-Za-z0-9_.-]/g, "-")}`.slice(0, 64);
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(serverName)) {
    throw new UsageError(
      `--server-name: "${serverName}" must be 1-64 letters, digits, '.', '_' or '-'`,
    );
  }

  // Unset: serve reads UNIBUS_NATS_MONITOR_PORT (else 8222) when it opens the monitor.
  const monitorFlag = str("nats-monitor-port");
  const natsMonitorPort = monitorFlag === undefined
    ? null
    : forFlag("nats-monitor-port", () => parsePort(monitorFlag));
  if (natsMonitorPort === 0) throw new UsageError("--nats-monitor-port: must be 1-65535");

  const unchecked: UncheckedServeOptions = {
    httpHost: http.host,
    httpPort: http.port,
    natsHost,
    natsPort,
    dataDir,
    dbPath: str("db") ?? `${dataDir.replace(/\/+$/, "")}/unibus.db`,
    store,
    kvReplicas,
    kvBootstrapTimeoutMs: Number(bootstrapText) * 1000,
    natsUrl,
    natsServerBin: str("nats-server-bin") ?? null,
    serverName,
    busAuth,
    internalIdFile: str("internal-id-file") ?? null,
    auditLog: str("audit-log") ?? auditLogIn(dataDir),
    tls: parseTlsFlags(str),
    insecurePublic: v["insecure-public"] === true,
    maxBodyBytes: forFlag("max-body", () => parseByteSize(str("max-body") ?? "1MiB")),
    natsMonitorPort,
    calloutIssuerFile: str("callout-issuer-file") ?? null,
    cluster,
    limits: parseLimitFlags(str),
    jetstreamSync: parseJetstreamSync(str("jetstream-sync") ?? "always"),
  };
  try {
    return { ...checkServeOptions(unchecked), help: v.help === true };
  } catch (err) {
    if (err instanceof ServeOptionsError) throw new UsageError(err.message);
    throw err;
  }
}

/** `unibus serve`. */
export const serveCommand: Command = {
  name: "serve",
  async run(argv) {
    const opts = parseServeArgs(argv);
    if (opts.help) {
      console.log(SERVE_HELP);
      return 0;
    }
    let audit;
    try {
      audit = await openAuditLog(opts.auditLog);
    } catch (err) {
      throw new Error(`--audit-log ${opts.auditLog}: ${err instanceof Error ? err.message : err}`);
    }
    const log = createLogger("serve", {
      level: Deno.env.get("UNIBUS_LOG_LEVEL") === "debug" ? "debug" : "info",
      auditSink: audit.sink,
    });
    try {
      // Loaded on demand so that the offline commands do not pay for the server.
      const { runServe } = await import("../server/serve.ts");
      return await runServe(opts, log);
    } finally {
      audit.close();
    }
  },
};
