/**
 * Three `unibus serve` nodes on loopback (the test harness's cluster: mutual
 * route TLS, `--store kv --kv-replicas 3`): cold start to all three healthy,
 * then failover: a client publishing every 20 ms into an E2E room and
 * receiving its own messages, the node it is attached to killed with
 * `kill -9` (serve and its nats-server), the time until it receives again;
 * the node restarted and the cluster healthy with replicas current before
 * the next kill. Bounded: `kills` rounds, each with deadlines.
 *
 * @module
 */

import { connect } from "../../lib/client/client.ts";
import { generateIdentity } from "../../lib/identity/identity.ts";
import { addKvUser, startServeCluster } from "../../tests/helpers/cluster.ts";
import { waitUntil } from "../../tests/helpers/nats_cluster.ts";

/** What {@linkcode benchCluster} measured, in milliseconds. */
export interface ClusterFigures {
  coldStartMs: number;
  /** Kill → first message received again, per kill. */
  failoverMs: number[];
  /** Kill → the restarted node healthy with replicas current, per kill. */
  rejoinMs: number[];
}

/**
 * Runs the cluster measurements.
 *
 * @example
 * ```ts
 * const f = await benchCluster(3);
 * console.log(f.coldStartMs, f.failoverMs);
 * ```
 */
export async function benchCluster(kills = 3): Promise<ClusterFigures> {
  const t0 = performance.now();
  const c = await startServeCluster();
  try {
    for (const i of [0, 1, 2]) await c.healthy(i, 60_000);
    const coldStartMs = Math.round(performance.now() - t0);
    const ada = generateIdentity("ada");
    await addKvUser(c, 0, ada, "admin");
    const client = await connect({
      natsServers: c.nodes.map((n) => n.natsUrl),
      ctrlUrls: c.nodes.map((n) => n.httpUrl),
      identity: ada,
    });
    const failoverMs: number[] = [];
    const rejoinMs: number[] = [];
    try {
      const room = await client.createRoom("bench.failover", {
        encrypt: true,
        sign: true,
        persist: false,
      });
      let lastAt = 0;
      await client.subscribe(room.id, () => lastAt = performance.now());
      let running = true;
      const publisher = (async () => {
        while (running) {
          await client.publish(room.id, "tick").catch(() => {});
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      try {
        for (let k = 0; k < kills; k++) {
          await waitUntil("receiving", 10_000, () => performance.now() - lastAt < 200);
          const attached = client.connectedServer();
          const victim = c.nodes.findIndex((n) =>
            n.natsUrl.endsWith(`:${attached?.split(":")[1]}`)
          );
          if (victim < 0) throw new Error(`attached to an unknown node ${attached}`);
          const killedAt = performance.now();
          await c.kill9(victim);
          await waitUntil("receiving again", 30_000, () => lastAt > killedAt);
          failoverMs.push(Math.round(lastAt - killedAt));
          c.start(victim);
          await c.ready(victim);
          await waitUntil("replicas current again", 90_000, async () => {
            const h = await c.health(victim);
            const cl = h.body.cluster as { replicasCurrent?: boolean } | undefined;
            return h.status === 200 && cl?.replicasCurrent === true;
          });
          rejoinMs.push(Math.round(performance.now() - killedAt));
        }
      } finally {
        running = false;
        await publisher;
      }
    } finally {
      await client.close();
    }
    return { coldStartMs, failoverMs, rejoinMs };
  } finally {
    await c.stop();
  }
}
