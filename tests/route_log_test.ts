/**
 * A peer that stays down costs one log line when it goes down, one every few
 * minutes while it stays down, and one when it is back: not nats-server's
 * line per dial attempt every second.
 */

import { createLogger } from "../lib/log.ts";
import { RouteDialLog } from "../server/nats/route_log.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { startNatsCluster, waitUntil } from "./helpers/nats_cluster.ts";

// Both forms nats-server 2.10 writes: with and without the connection prefix.
const fail = (peer: string, n: number) =>
  n % 2 === 0
    ? `[ERR] Error trying to connect to route (attempt ${n}): dial tcp ${peer}: connect: connection refused`
    : `[DBG] ${peer} - rid:${n} - Error trying to connect to route (attempt ${n}): dial tcp ${peer}: i/o timeout`;

Deno.test("route dial failures are said once per peer per change, on a clock", () => {
  const lines: string[] = [];
  let now = 0;
  const routes = new RouteDialLog(
    createLogger("t", { level: "info", sink: (l) => lines.push(l) }),
    {
      stillDownEveryMs: 300_000,
      quietMs: 3_600_000,
      now: () => now,
    },
  );
  try {
    // An hour of one failure a second, for two peers.
    for (let s = 0; s < 3600; s++) {
      now = s * 1000;
      assert(routes.consume(fail("10.0.0.2:6250", s + 1)));
      assert(routes.consume(fail("10.0.0.3:6250", s + 1)));
    }
    const said = (what: string) => lines.filter((l) => l.includes(what)).length;
    assertEquals(said("is down"), 2);
    assertEquals(said("is still down"), 2 * 11); // at 5, 10, …, 55 min
    assert(!routes.consume("[INF] 10.0.0.2:6250 - rid:9 - Route connection created"));
    assertEquals(said("is back"), 1);
    assert(!routes.consume("[INF] Server is ready"), "other lines pass through");
    assertEquals(lines.length, 2 + 22 + 1);
  } finally {
    routes.close();
  }
});

Deno.test("a real cluster with one node absent logs its dial failures once, and the peer back", async () => {
  // Nodes 1 and 2 run, node 3 is configured but not started: both dial it every second.
  const c = await startNatsCluster(3, { start: [0, 1] });
  try {
    await new Promise((r) => setTimeout(r, 4000));
    const absent = `127.0.0.1:${c.nodes[2].clusterPort}`;
    for (const n of c.nodes.slice(0, 2)) {
      const raw = n.logLines.filter((l) => l.includes("Error trying to connect to route"));
      const down = n.logLines.filter((l) =>
        l.includes("route to a cluster peer is down") && l.includes(absent)
      );
      assertEquals([raw.length, down.length], [0, 1], `${n.name}: ${n.logLines.join("\n")}`);
    }
    await c.nodes[2].server.start();
    await waitUntil(
      "both nodes say the peer is back",
      30_000,
      () =>
        c.nodes.slice(0, 2).every((n) =>
          n.logLines.some((l) =>
            l.includes("route to a cluster peer is back") && l.includes(absent)
          )
        ),
    );
  } finally {
    await c.stop();
  }
});
