/**
 * What `unibus serve` runs with. The CLI (`cli/serve.ts`) parses and validates
 * flags into it; `server/serve.ts` runs it; nothing in `server/` imports `cli/`.
 *
 * @module
 */

/** Everything `serve` runs with, validated. */
export interface ServeOptions {
  httpHost: string;
  httpPort: number;
  natsHost: string;
  natsPort: number;
  dataDir: string;
  dbPath: string;
  store: "sqlite";
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
}
