/**
 * Bench set-up shared by the benchmarks: bus users written straight into a
 * serve's store, their NATS login, and a process's resident memory.
 *
 * @module
 */

import { connect as natsConnect, type NatsConnection } from "@nats-io/transport-node";
import { inboxPrefixFor } from "../../lib/auth/acl.ts";
import { busUserAuthenticator, NativeNkeyPair, Prefix } from "../../lib/auth/nkey.ts";
import type { Identity } from "../../lib/identity/identity.ts";
import { openSqliteStore } from "../../lib/store/sqlite.ts";
import type { Store } from "../../lib/store/store.ts";

/**
 * Allowlists `ids` (members, with their kex keys) in `store`, handles
 * `<prefix>-<i>`.
 *
 * @example
 * ```ts
 * await addBenchUsers(store, [generateIdentity("a")], "bench");
 * ```
 */
export async function addBenchUsers(store: Store, ids: Identity[], prefix: string) {
  for (const [i, id] of ids.entries()) {
    await store.addUser({
      signPub: id.signPubHex,
      handle: `${prefix}-${i}`,
      role: "member",
      kexPub: id.kexPubHex,
      kexSig: id.kexSigHex,
    });
  }
}

/**
 * Allowlists `ids` (with their kex keys) in the SQLite store under `dataDir`.
 *
 * @example
 * ```ts
 * await registerUsers(serve.dataDir, [generateIdentity("a")], "bench");
 * ```
 */
export async function registerUsers(dataDir: string, ids: Identity[], prefix: string) {
  const store = await openSqliteStore(`${dataDir}/unibus.db`);
  try {
    await addBenchUsers(store, ids, prefix);
  } finally {
    await store.close();
  }
}

/**
 * Resident memory of a process in MiB (one decimal), NaN once it is gone.
 *
 * @example
 * ```ts
 * rssMiB(Deno.pid);
 * ```
 */
export function rssMiB(pid: number): number {
  try {
    const kb = Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1]);
    return Math.round((kb / 1024) * 10) / 10;
  } catch {
    return NaN;
  }
}

/**
 * A bus user's own NATS connection to a serve's nats-server on loopback
 * (nkey through the callout, its private inbox prefix, no reconnect).
 *
 * @example
 * ```ts
 * const nc = await natsLogin(serve.natsPort, generateIdentity("a"));
 * ```
 */
export function natsLogin(port: number, id: Identity): Promise<NatsConnection> {
  return natsConnect({
    servers: `127.0.0.1:${port}`,
    authenticator: busUserAuthenticator(new NativeNkeyPair(Prefix.User, id.signSeed)),
    inboxPrefix: inboxPrefixFor(id.signPubHex),
    timeout: 60_000,
    maxReconnectAttempts: 0,
  });
}
