import { openSqliteStore } from "../lib/store/sqlite.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { addBusUser, addRoom, connectAs, strangerUser } from "./helpers/bus.ts";
import { waitUntil } from "./helpers/nats_cluster.ts";
import { startServe } from "./helpers/serve_process.ts";

function sample(text: string, series: string): number | null {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line ? Number(line.slice(series.length + 1)) : null;
}

Deno.test("/metrics: Prometheus text with connections, callout results, HTTP, store latency, quorum", async () => {
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce"] });
  const store = await openSqliteStore(`${s.dataDir}/unibus.db`);
  try {
    const alice = await addBusUser(store, "alice");
    await addRoom(store, "r", "metrics.room", [alice]);
    assertEquals(await fetch(`${s.httpUrl}/healthz`).then((r) => r.status), 200);
    assertEquals(await fetch(`${s.httpUrl}/v1/rooms`).then((r) => r.status), 401);
    const nc = await connectAs(s.natsPort, alice);
    await connectAs(s.natsPort, strangerUser()).then((x) => x.close(), () => {});

    const text = await waitUntil("the connection to be counted", 5000, async () => {
      const res = await fetch(`${s.httpUrl}/metrics`);
      assertMatch(res.headers.get("content-type") ?? "", /^text\/plain/);
      const t = await res.text();
      return sample(t, "unibus_connections") === 1 ? t : null;
    });
    assertMatch(text, /# TYPE unibus_callout_seconds histogram/);
    assertEquals(sample(text, 'unibus_callout_total{result="allowed"}'), 1);
    assertEquals(sample(text, 'unibus_callout_total{result="denied"}'), 1);
    assertEquals(sample(text, 'unibus_http_requests_total{route="/healthz",status="200"}'), 1);
    assertEquals(sample(text, 'unibus_http_requests_total{route="/v1/rooms",status="401"}'), 1);
    // The callout reads each login (alice, the stranger) with one getUserAccess.
    assert(
      (sample(text, 'unibus_store_op_seconds_count{op="getUserAccess",result="ok"}') ?? 0) >= 2,
    );
    assertEquals(sample(text, "unibus_nats_server_restarts"), 0);
    assertEquals(sample(text, "unibus_cluster_quorum"), 1);
    // Labels are patterns and fixed words: no key or subject ever appears.
    assert(!text.includes(alice.hex) && !text.includes("metrics.room"));
    await nc.close();
  } finally {
    await store.close();
    await s.stop();
  }
});

Deno.test("an instrumented store keeps working, closes, and times each operation", async () => {
  const { createMetrics } = await import("../server/metrics.ts");
  const metrics = createMetrics({
    connections: () => 0,
    natsRestarts: () => 0,
    cluster: () => null,
  });
  const dir = await Deno.makeTempDir({ prefix: "unibus-metrics-" });
  try {
    const store = metrics.instrumentStore(await openSqliteStore(`${dir}/unibus.db`));
    assertEquals(await store.getUser("00".repeat(32)), null);
    await store.close();
    const text = await metrics.registry.metrics();
    assertEquals(sample(text, 'unibus_store_op_seconds_count{op="getUser",result="ok"}'), 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
