/**
 * serve's memory under a flood of maximum-size uploads with bad signatures
 * (issue 8, finding 5): rounds of `parallel` concurrent 8 MiB blob uploads
 * that name a registered key but carry a signature by another key, against
 * a real `serve --bus-auth enforce` on loopback. Reports serve's RSS before
 * the flood, its peak while it runs (sampled every 20 ms from /proc), and
 * how the requests were answered. Bounded in count (`rounds × parallel`)
 * and in time (`maxMs`).
 *
 * Run alone: `deno run -A scripts/bench/upload_flood.ts [--parallel=40] [--rounds=5]`.
 *
 * @module
 */

import { signRequest } from "../../lib/auth/request_signing.ts";
import { generateSeed, keyPairFromSeed } from "../../lib/crypto/ed25519.ts";
import { generateIdentity } from "../../lib/identity/identity.ts";
import { installConnectionResetGuard } from "../../lib/nats/connection_reset_guard.ts";
import { openSqliteStore } from "../../lib/store/sqlite.ts";
import { startServe } from "../../tests/helpers/serve_process.ts";
import { rssMiB } from "./users.ts";

/** What one flood measured. */
export interface FloodResult {
  parallel: number;
  rounds: number;
  bodyBytes: number;
  /** serve's RSS before the first request, MiB. */
  rssBeforeMiB: number;
  /** Highest RSS sampled while the flood ran, MiB. */
  rssPeakMiB: number;
  /** Answers by HTTP status ("error" when the connection broke first). */
  answers: Record<string, number>;
  ms: number;
}

const MiB = 1024 * 1024;

/**
 * Runs the flood; `parallel` requests at once, `rounds` times, at most `maxMs`.
 *
 * @example
 * ```ts
 * const r = await benchUploadFlood(40, 5);
 * console.log(r.rssBeforeMiB, r.rssPeakMiB);
 * ```
 */
export async function benchUploadFlood(
  parallel: number,
  rounds: number,
  maxMs = 120_000,
): Promise<FloodResult> {
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce"] });
  try {
    const victim = generateIdentity("victim");
    const store = await openSqliteStore(`${s.dataDir}/unibus.db`);
    await store.addUser({
      signPub: victim.signPubHex,
      handle: "victim",
      role: "member",
      kexPub: victim.kexPubHex,
      kexSig: victim.kexSigHex,
    });
    await store.close();
    const attacker = keyPairFromSeed(generateSeed());
    const body = new Uint8Array(8 * MiB).fill(0x5a);
    const path = `/v1/rooms/${"0".repeat(32)}/blobs`;
    const pid = s.child.pid;

    let peak = 0;
    const before = rssMiB(pid);
    const sampler = setInterval(() => peak = Math.max(peak, rssMiB(pid)), 20);
    const answers: Record<string, number> = {};
    const t0 = performance.now();
    try {
      for (let r = 0; r < rounds && performance.now() - t0 < maxMs; r++) {
        await Promise.all(Array.from({ length: parallel }, async () => {
          // The victim's key in the header, the attacker's signature: what
          // anyone who learnt a public key can send.
          const headers = signRequest(attacker, { method: "POST", pathAndQuery: path, body });
          headers["x-unibus-key"] = victim.signPubHex;
          let key = "error";
          try {
            const res = await fetch(`${s.httpUrl}${path}`, {
              method: "POST",
              headers: { ...headers, "content-type": "application/octet-stream" },
              body,
              signal: AbortSignal.timeout(Math.max(1, maxMs - (performance.now() - t0))),
            });
            key = String(res.status);
            await res.body?.cancel();
          } catch { /* the server answered early and closed; counted as "error" */ }
          answers[key] = (answers[key] ?? 0) + 1;
        }));
      }
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, rssMiB(pid));
    return {
      parallel,
      rounds,
      bodyBytes: body.byteLength,
      rssBeforeMiB: before,
      rssPeakMiB: peak,
      answers,
      ms: Math.round(performance.now() - t0),
    };
  } finally {
    await s.stop();
  }
}

if (import.meta.main) {
  installConnectionResetGuard();
  const arg = (name: string, d: number) =>
    Number(Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? d);
  console.log(JSON.stringify(await benchUploadFlood(arg("parallel", 40), arg("rounds", 5))));
}
