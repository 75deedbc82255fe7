/**
 * How often three `unibus serve` nodes started at the same instant on empty
 * data dirs form a JetStream meta group of all three, with no second try:
 * `starts` cold starts, `atOnce` clusters at a time (the others' load is each
 * one's noise, as on a busy host). A start that fails is counted with what
 * its nodes said (a short meta group leaves every R3 bucket unplaceable).
 *
 * @module
 */

import { startServeCluster } from "../../tests/helpers/cluster.ts";
import { waitUntil } from "../../tests/helpers/nats_cluster.ts";

/** What {@linkcode benchColdStart} measured. */
export interface ColdStartFigures {
  starts: number;
  atOnce: number;
  /** Starts whose three nodes were ready and reported a meta group of 3. */
  formed: number;
  /** The first line of each failed start's reason. */
  failures: string[];
  readyP50Ms: number | null;
  readyMaxMs: number | null;
}

/** One cold start: ready time, or why it failed. */
async function coldStart(): Promise<{ ms: number } | { failure: string }> {
  const t0 = performance.now();
  let c;
  try {
    c = await startServeCluster({ attempts: 1, readyMs: 45_000 });
  } catch (err) {
    const msg = (err as Error).message;
    return {
      failure: /no suitable peers/.test(msg)
        ? "no suitable peers for placement"
        : msg.split("\n")[0].slice(0, 200),
    };
  }
  try {
    const ms = Math.round(performance.now() - t0);
    // Each node's monitor polls every few seconds: its first view of the group.
    const sizes = await waitUntil("every node to report its meta group", 15_000, async () => {
      const hs = await Promise.all([0, 1, 2].map((i) => c.health(i)));
      const s = hs.map((h) => (h.body.cluster as { clusterSize: number | null }).clusterSize);
      return s.every((n) => n !== null) && s;
    }).catch(() => null);
    if (sizes === null || sizes.some((n) => n !== 3)) {
      return { failure: `meta group sizes ${JSON.stringify(sizes)}` };
    }
    return { ms };
  } finally {
    await c.stop();
  }
}

/**
 * Runs `starts` cold starts, `atOnce` at a time.
 *
 * @example
 * ```ts
 * const f = await benchColdStart(20, 2);
 * console.log(`${f.formed} of ${f.starts}`);
 * ```
 */
export async function benchColdStart(starts: number, atOnce: number): Promise<ColdStartFigures> {
  const times: number[] = [];
  const failures: string[] = [];
  for (let done = 0; done < starts; done += atOnce) {
    const round = await Promise.all(
      Array.from({ length: Math.min(atOnce, starts - done) }, () => coldStart()),
    );
    for (const r of round) "ms" in r ? times.push(r.ms) : failures.push(r.failure);
  }
  times.sort((a, b) => a - b);
  return {
    starts,
    atOnce,
    formed: times.length,
    failures,
    readyP50Ms: times.length ? times[Math.floor(times.length / 2)] : null,
    readyMaxMs: times.length ? times[times.length - 1] : null,
  };
}
