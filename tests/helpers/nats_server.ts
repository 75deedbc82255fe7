/**
 * A bare nats-server with JetStream on a free loopback port, for tests of the
 * KV store that need no `serve` around it.
 *
 * @module
 */

import { connect, type NatsConnection } from "@nats-io/transport-node";
import { resolveNatsServerBin } from "../../server/nats/binary.ts";
import { freePort, isAlive } from "./ports.ts";

/** A running nats-server under test. */
export interface NatsServerUnderTest {
  port: number;
  url: string;
  storeDir: string;
  /** A new client connection (closed by the caller). */
  connect(): Promise<NatsConnection>;
  /** SIGKILL-free stop: SIGTERM, wait; keeps the store dir unless `remove`. */
  stop(opts?: { remove?: boolean }): Promise<void>;
  /** Starts it again on the same port and store dir (after stop). */
  restart(): Promise<void>;
  /** The running process's pid (to SIGSTOP it: a store that takes a write and never answers). */
  readonly pid: number;
}

/**
 * Starts `nats-server -js` on 127.0.0.1 and waits until it accepts connections.
 *
 * @example
 * ```ts
 * const ns = await startNatsServer();
 * try { const nc = await ns.connect(); await nc.close(); } finally { await ns.stop({ remove: true }); }
 * ```
 */
export async function startNatsServer(): Promise<NatsServerUnderTest> {
  const bin = (await resolveNatsServerBin({ env: Deno.env.toObject() })).path;
  const storeDir = await Deno.makeTempDir({ prefix: "unibus-nats-" });
  let port = freePort();
  let child: Deno.ChildProcess | null = null;

  const launch = async () => {
    for (let attempt = 0; attempt < 4; attempt++) {
      child = new Deno.Command(bin, {
        args: ["-js", "-sd", storeDir, "-a", "127.0.0.1", "-p", String(port)],
        stdout: "null",
        stderr: "null",
        stdin: "null",
      }).spawn();
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        try {
          (await Deno.connect({ hostname: "127.0.0.1", port })).close();
          return;
        } catch {
          const st = await Promise.race([
            child.status,
            new Promise<null>((r) => setTimeout(() => r(null), 50)),
          ]);
          if (st !== null) break; // exited: port taken, try another
        }
      }
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
      port = freePort();
    }
    throw new Error("nats-server did not start");
  };
  await launch();

  const stop = async (opts: { remove?: boolean } = {}) => {
    const c = child as Deno.ChildProcess | null;
    if (c !== null) {
      if (isAlive(c.pid)) {
        try {
          c.kill("SIGTERM");
        } catch { /* gone */ }
      }
      await c.status;
      child = null;
    }
    if (opts.remove) await Deno.remove(storeDir, { recursive: true }).catch(() => {});
  };

  return {
    get port() {
      return port;
    },
    get url() {
      return `nats://127.0.0.1:${port}`;
    },
    storeDir,
    get pid() {
      const c = child as Deno.ChildProcess | null;
      if (c === null) throw new Error("nats-server is not running");
      return c.pid;
    },
    connect: () => connect({ servers: `127.0.0.1:${port}` }),
    stop,
    restart: launch,
  };
}
