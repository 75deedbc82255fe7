/**
 * Bench set-up shared by the benchmarks: bus users written straight into a
 * serve's store, and a process's resident memory.
 *
 * @module
 */

import type { Identity } from "../../lib/identity/identity.ts";
import { openSqliteStore } from "../../lib/store/sqlite.ts";

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
    for (const [i, id] of ids.entries()) {
      await store.addUser({
        signPub: id.signPubHex,
        handle: `${prefix}-${i}`,
        role: "member",
        kexPub: id.kexPubHex,
        kexSig: id.kexSigHex,
      });
    }
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
