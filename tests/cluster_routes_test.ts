/**
 * Real nats-server clusters configured by server/nats/config.ts: routes over
 * mutual TLS with the injected secret, the meta leader as serve's cluster
 * monitor sees it, posture gossip, quorum loss, and the route secret in no
 * argv and no log line. (The whole three-serve cluster waits for --store kv.)
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { createLogger } from "../lib/log.ts";
import { type ClusterMonitor, startClusterMonitor } from "../server/cluster/status.ts";
import { createApp } from "../server/http/app.ts";
import { healthRoute } from "../server/http/health.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { startNatsCluster, type TestNatsCluster, waitUntil } from "./helpers/nats_cluster.ts";

const quiet = createLogger("test", { sink: () => {} });

async function routeCount(monitorPort: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${monitorPort}/routez`);
  return (await res.json()).num_routes;
}

/** `/healthz` as serve builds it, over node `i`'s real monitor. */
async function healthz(
  mon: ClusterMonitor,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const app = createApp({
    log: quiet,
    routes: [healthRoute({
      posture: { auth: "enforce", acl: true, tls: true, store: "kv", replicas: 3 },
      dataPlane: () => ({ connected: true, serverName: "n1", jetstream: true }),
      cluster: () => mon.status(),
    })],
  });
  const res = await app(new Request("http://127.0.0.1/healthz"));
  return { status: res.status, body: await res.json() };
}

async function monitors(c: TestNatsCluster, tls: boolean) {
  const conns: NatsConnection[] = [];
  const mons: ClusterMonitor[] = [];
  for (let i = 0; i < c.nodes.length; i++) {
    const sys = await c.connectAs(i, "system");
    const app = await c.connectAs(i, "internal");
    conns.push(sys, app);
    mons.push(startClusterMonitor({
      clusterName: "unibus-test",
      node: c.nodes[i].name,
      posture: { auth: "enforce", acl: true, tls: tls && i !== 2, store: "kv", replicas: 3 },
      sys,
      app,
      log: quiet,
      intervalMs: 250,
    }));
  }
  return {
    mons,
    async close() {
      await Promise.all(mons.map((m) => m.stop()));
      await Promise.all(conns.map((nc) => nc.close().catch(() => {})));
    },
  };
}

Deno.test("three nodes form routes over mutual TLS, elect a meta leader, gossip posture; the secret is in no argv or log", async () => {
  const c = await startNatsCluster(3, { routeTls: true });
  let m: Awaited<ReturnType<typeof monitors>> | null = null;
  try {
    for (const n of c.nodes) {
      await waitUntil(
        `${n.name} routed to both peers`,
        30_000,
        async () => await routeCount(n.monitorPort) === 2,
      );
    }
    m = await monitors(c, true);
    const leader = await waitUntil(
      "every node to see one meta leader",
      30_000,
      () => {
        const leaders = new Set(m!.mons.map((x) => x.status().metaLeader));
        return leaders.size === 1 && !leaders.has(null) ? [...leaders][0] : null;
      },
    );
    assert(["n1", "n2", "n3"].includes(leader!), `leader ${leader}`);
    const s = await waitUntil("n1 to hear both peers' posture", 10_000, () => {
      const st = m!.mons[0].status();
      return st.peers.every((p) => p.posture !== null) && st.peers.length === 2 ? st : null;
    });
    assertEquals(s.name, "unibus-test");
    assertEquals(s.node, "n1");
    assertEquals(s.quorum, true);
    assertEquals(s.peers.map((p) => [p.name, p.route]), [["n2", "up"], ["n3", "up"]]);
    // n3 runs without data-plane TLS: every other node flags it.
    assertEquals(s.peers.find((p) => p.name === "n3")!.flags, ["no TLS"]);
    assertEquals(s.peers.find((p) => p.name === "n2")!.flags, []);
    const healthy = await healthz(m.mons[0]);
    assertEquals(healthy.status, 200);
    const hc = healthy.body.cluster as { name: string; node: string; metaLeader: string };
    assertEquals([hc.name, hc.node, hc.metaLeader], ["unibus-test", "n1", leader]);

    // The secret lives only in the 0600 config file.
    for (const n of c.nodes) {
      const argv = await Deno.readTextFile(`/proc/${n.server.pid}/cmdline`);
      assert(!argv.includes(c.pass), `${n.name}'s argv holds the route secret`);
      assertEquals((await Deno.stat(n.configPath)).mode! & 0o777, 0o600);
      assert((await Deno.readTextFile(n.configPath)).includes(c.pass));
      assert(n.logLines.length > 10, "debug logging wrote lines to check");
      for (const line of n.logLines) {
        assert(!line.includes(c.pass), `${n.name} logged the route secret: ${line}`);
      }
    }

    // Two of three gone: the survivor has no meta leader, so no quorum.
    await c.nodes[1].server.stop();
    await c.nodes[2].server.stop();
    await waitUntil("n1 to lose its meta leader", 30_000, () => !m!.mons[0].status().quorum);
    const lone = m.mons[0].status();
    assertEquals(lone.metaLeader, null);
    assertEquals(lone.peers.map((p) => p.route), ["down", "down"]);
    const unhealthy = await healthz(m.mons[0]);
    assertEquals(unhealthy.status, 503);
    assertEquals(unhealthy.body.status, "unavailable");

    // One node back: quorum (2 of 3) again.
    await c.nodes[1].restart();
    await waitUntil("n1 to see a meta leader again", 30_000, () => m!.mons[0].status().quorum);
  } finally {
    await m?.close();
    await c.stop();
  }
});

Deno.test("a lone node of a three-node cluster never has a meta leader", async () => {
  const c = await startNatsCluster(3, { start: [0] });
  let m: Awaited<ReturnType<typeof monitors>> | null = null;
  try {
    m = await monitors({ ...c, nodes: [c.nodes[0]] }, false);
    const deadline = Date.now() + 6000;
    let polled = false;
    while (Date.now() < deadline) {
      const s = m.mons[0].status();
      assertEquals(s.quorum, false, `a lone node reported a meta leader: ${s.metaLeader}`);
      assertEquals((await healthz(m.mons[0])).status, 503);
      polled ||= s.error === null;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert(polled, "the monitor never managed to poll its own server");
  } finally {
    await m?.close();
    await c.stop();
  }
});

Deno.test("a node with the wrong route secret is kept out", async () => {
  const c = await startNatsCluster(3, { wrongPassFor: 2 });
  try {
    await waitUntil(
      "n1 and n2 routed to each other",
      30_000,
      async () =>
        await routeCount(c.nodes[0].monitorPort) === 1 &&
        await routeCount(c.nodes[1].monitorPort) === 1,
    );
    // Give n3 several route attempts (it retries every second).
    await new Promise((r) => setTimeout(r, 3000));
    assertEquals(await routeCount(c.nodes[2].monitorPort), 0);
    assertEquals(await routeCount(c.nodes[0].monitorPort), 1);
  } finally {
    await c.stop();
  }
});
