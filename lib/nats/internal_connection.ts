/**
 * The one long-lived NATS connection `serve` keeps to its data plane, with
 * JetStream, that later features (auth callout, KV store, room streams) use.
 *
 * @module
 */

import { type Authenticator, connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import type { Logger } from "../log.ts";

/** Options for {@linkcode connectInternal}. */
export interface InternalConnectionOptions {
  servers: string[];
  name: string;
  /** How long the first connect may take before it is an error. */
  timeoutMs?: number;
  /** Credentials (enforce mode: the internal identity's nkey). */
  authenticator?: Authenticator;
  /** PEM file of the CA that signed the server's certificate. */
  caFile?: string;
  /** Check that JetStream answers (false for the system-account connection). */
  jetstream?: boolean;
  log: Logger;
}

/** Thrown when the data plane cannot be reached at start. */
export class NatsUnreachableError extends Error {
  override name = "NatsUnreachableError";
}

/** What `/healthz` reports about the data plane. */
export interface DataPlaneState {
  connected: boolean;
  serverName: string | null;
  jetstream: boolean;
}

/** The connection and what is known about its state. */
export interface InternalConnection {
  readonly nc: NatsConnection;
  /** The data-plane facts `/healthz` reports, without a round trip. */
  state(): DataPlaneState;
  close(): Promise<void>;
}

/**
 * Connects to the data plane, reconnecting forever afterwards (the managed
 * child may be restarting), and checks that JetStream answers.
 *
 * @example
 * ```ts
 * const conn = await connectInternal({ servers: ["nats://127.0.0.1:4250"], name: "unibus-serve", log });
 * conn.state(); // { connected: true, serverName: "n1", jetstream: true }
 * ```
 */
export async function connectInternal(
  opts: InternalConnectionOptions,
): Promise<InternalConnection> {
  const where = opts.servers.join(", ");
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: opts.servers,
      name: opts.name,
      timeout: opts.timeoutMs ?? 5000,
      maxReconnectAttempts: -1,
      // serve's users are in its own nats-server's config only: drifting to
      // another node (learned from cluster gossip) would be refused there.
      ignoreClusterUpdates: true,
      reconnectTimeWait: 250,
      pingInterval: 10_000,
      authenticator: opts.authenticator,
      tls: opts.caFile ? { caFile: opts.caFile } : undefined,
    });
  } catch (err) {
    throw new NatsUnreachableError(`cannot reach NATS at ${where}: ${describe(err)}`);
  }
  if (opts.jetstream !== false) {
    try {
      const jsm = await jetstreamManager(nc, { timeout: opts.timeoutMs ?? 5000 });
      await jsm.getAccountInfo();
    } catch (err) {
      await nc.close().catch(() => {});
      throw new NatsUnreachableError(
        `NATS at ${where} answers but JetStream does not: ${describe(err)}`,
      );
    }
  }
  let connected = true;
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect") {
        connected = false;
        opts.log.warn("data plane disconnected", { server: s.server });
      } else if (s.type === "reconnect") {
        connected = true;
        opts.log.info("data plane reconnected", { server: s.server });
      }
    }
  })();
  return {
    nc,
    state: () => {
      const up = connected && !nc.isClosed();
      return {
        connected: up,
        serverName: up ? nc.info?.server_name ?? null : null,
        jetstream: up && nc.info?.jetstream === true,
      };
    },
    close: () => nc.close(),
  };
}

function describe(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg || "unknown error";
}
