/**
 * Cold starts of three `unibus serve` nodes at the same instant on empty
 * data dirs, for the test that wants every one to form a meta group of all
 * three and for `deno task bench --only=cold-start`, which counts them.
 *
 * @module
 */

import { startServeCluster } from "./cluster.ts";
import { waitUntil } from "./nats_cluster.ts";

/** What {@linkcode coldStarts} saw. */
export interface ColdStartFigures {
  starts: number;
  atOnce: number;
  /** Starts whose three nodes were ready and reported a meta group of 3. */
  formed: number;
  /** The first line of each failed start's reason. */
  failures: string[];
  /** Formed starts in which a node left out of a short group restarted its nats-server. */
  healed: number;
  readyP50Ms: number | null;
  readyMaxMs: number | null;
}

/**
 * One cold start, no second try: its ready time (and whether a node left out
 * of a short meta group restarted itself), or why it failed.
 *
 * @example
 * ```ts
 * const r = await coldStart(); // { ms: 9800, healed: false }
 * ```
 */
export async function coldStart(): Promise<{ ms: number; healed: boolean } | { failure: string }> {
  const t0 = performance.now();
  let c;
  try {
    c = await startServeCluster({ readyMs: 60_000 });
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
    // A node left out of a short meta group restarts its nats-server
    // (server/cluster/meta_watchdog.ts): counted apart, as it took longer.
    const healed = c.nodes.some((n) =>
      n.history.some((p) =>
        p.lines.some((l) => String(l.msg).startsWith("left out of the JetStream meta group"))
      )
    );
    return { ms, healed };
  } finally {
    await c.stop();
  }
}

/**
 * Runs `starts` cold starts, `atOnce` at a time.
 *
 * @example
 * ```ts
 * const f = await coldStarts(20, 2);
 * console.log(`${f.formed} of ${f.starts}`);
 * ```
 */
export async function coldStarts(starts: number, atOnce: number): Promise<ColdStartFigures> {
  const times: number[] = [];
  const failures: string[] = [];
  let healed = 0;
  for (let done = 0; done < starts; done += atOnce) {
    const round = await Promise.all(
      Array.from({ length: Math.min(atOnce, starts - done) }, () => coldStart()),
    );
    for (const r of round) {
      if ("ms" in r) {
        times.push(r.ms);
        if (r.healed) healed++;
      } else failures.push(r.failure);
    }
  }
  times.sort((a, b) => a - b);
  return {
    starts,
    atOnce,
    formed: times.length,
    failures,
    healed,
    readyP50Ms: times.length ? times[Math.floor(times.length / 2)] : null,
    readyMaxMs: times.length ? times[times.length - 1] : null,
  };
}
