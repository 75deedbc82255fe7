/**
 * Per-user limits at the data plane, against a real serve in enforce mode:
 * a runaway client opening 1,000 connections gets the configured number and
 * a clear refusal for the rest, while another user logs in as usual; closing
 * connections frees their places.
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { assertEquals, assertMatch } from "./helpers/assert.ts";
import { addBusUser, type BusUser, connectAs } from "./helpers/bus.ts";
import { runUnibus } from "./helpers/serve_process.ts";
import { inboxPrefixFor } from "../lib/auth/acl.ts";
import { DEFAULT_LIMITS } from "../server/limits.ts";
import { startBus, stopBus } from "./helpers/rooms_api.ts";
import { waitFor } from "./helpers/wait.ts";

const CONNECTIONS = 20;

Deno.test("a runaway user opening 1,000 connections is held to its limit; others are not touched", async () => {
  const bus = await startBus(["--max-connections-per-user", String(CONNECTIONS)]);
  const open: NatsConnection[] = [];
  try {
    const runaway = await addBusUser(bus.store, "runaway");
    const calm = await addBusUser(bus.store, "calm");

    // 1,000 connection attempts, in waves of 50.
    let admitted = 0;
    let refused = 0;
    for (let wave = 0; wave < 20; wave++) {
      const tries = await Promise.allSettled(
        Array.from({ length: 50 }, () => connectAs(bus.s.natsPort, runaway)),
      );
      for (const t of tries) {
        if (t.status === "fulfilled") {
          admitted++;
          open.push(t.value);
        } else refused++;
      }
    }
    // Exactly the limit, racing waves included: a login is counted from its check.
    assertEquals(admitted, CONNECTIONS);
    assertEquals(admitted + refused, 1000);
    await bus.s.waitFor((l) =>
      l.msg === "connection refused" && /too many connections/.test(String(l.reason))
    );
    // Another user logs in and talks as usual.
    const other = await connectAs(bus.s.natsPort, calm);
    open.push(other);
    await other.flush();

    // Closing connections frees places: the user logs in again.
    for (const nc of open.splice(0, 5)) await nc.close();
    const again = await waitFor(
      () => connectAs(bus.s.natsPort, runaway).catch(() => null),
      { timeoutMs: 10_000, what: "a login after closing five connections" },
    );
    open.push(again);
  } finally {
    for (const nc of open) await nc.close().catch(() => {});
    await stopBus(bus);
  }
});

Deno.test("unibus user set-limits gives one user its own connection limit, live, and 'default' takes it back", async () => {
  const bus = await startBus(["--max-connections-per-user", "4"]);
  const open: NatsConnection[] = [];
  const db = `${bus.s.dataDir}/unibus.db`;
  const attempt = async (who: BusUser, n: number) => {
    let admitted = 0;
    for (
      const t of await Promise.allSettled(
        Array.from({ length: n }, () => connectAs(bus.s.natsPort, who)),
      )
    ) {
      if (t.status === "fulfilled") {
        admitted++;
        open.push(t.value);
      }
    }
    return admitted;
  };
  try {
    const gateway = await addBusUser(bus.store, "gateway");
    const agent = await addBusUser(bus.store, "agent");
    const set = (who: BusUser, value: string) =>
      runUnibus(["user", "set-limits", who.hex, "--max-connections", value, "--db", db]);

    const more = await set(gateway, "9");
    assertEquals(more.code, 0, more.stderr);
    assertMatch(more.stdout, /at most 9 connections at once/);
    assertEquals((await set(agent, "1")).code, 0);
    // Bad values and unknown users: one line, nothing changed.
    for (const bad of ["0", "-3", "100001", "many", ""]) {
      const r = await set(agent, bad);
      assertEquals(r.code, 2, `${bad}: ${r.stderr}`);
    }
    const stranger = await runUnibus([
      "user",
      "set-limits",
      "ab".repeat(32),
      "--max-connections",
      "3",
      "--db",
      db,
    ]);
    assertEquals(stranger.code, 1);
    assertMatch(stranger.stderr.trim(), /^unibus user: no user (ab)+ in /);

    // The running node reads each user's own limit at login.
    assertEquals(await attempt(gateway, 12), 9);
    assertEquals(await attempt(agent, 3), 1);
    const listed = JSON.parse((await runUnibus(["user", "list", "--json", "--db", db])).stdout);
    assertEquals(
      listed.map((
        u: { handle: string; maxConnections: number | null },
      ) => [u.handle, u.maxConnections]),
      [["gateway", 9], ["agent", 1]],
    );
    // Back to the node's limit (4): three more logins, not four.
    assertEquals((await set(agent, "default")).code, 0);
    assertEquals(await attempt(agent, 4), 3);
    const audit = (await Deno.readTextFile(`${bus.s.dataDir}/audit.log`)).trim().split("\n")
      .map((l) => JSON.parse(l)).filter((e) => e.event === "user.limits");
    assertEquals(audit.map((e) => [e.handle, e.maxConnections, e.before]), [
      ["gateway", 9, null],
      ["agent", 1, null],
      ["agent", null, 1],
    ]);
  } finally {
    for (const nc of open) await nc.close().catch(() => {});
    await stopBus(bus);
  }
});

Deno.test("a runaway connection opening 10,000 subscriptions is refused past the node's limit; others are not touched", async () => {
  const bus = await startBus([]);
  const open: NatsConnection[] = [];
  try {
    const runaway = await addBusUser(bus.store, "runaway");
    const calm = await addBusUser(bus.store, "calm");
    const nc = await connectAs(bus.s.natsPort, runaway);
    open.push(nc);
    const prefix = inboxPrefixFor(runaway.hex);
    const heard = new Set<number>();
    for (let i = 0; i < 10_000; i++) {
      nc.subscribe(`${prefix}.sub.${i}`, {
        callback: () => {
          heard.add(i);
        },
      });
    }
    await nc.flush().catch(() => {});
    // nats-server says why, once per account and interval.
    await bus.s.waitFor((l) => /maximum subscriptions exceeded/i.test(JSON.stringify(l)));

    // Within the limit the runaway still hears; past it nothing is delivered.
    const other = await connectAs(bus.s.natsPort, calm);
    open.push(other);
    const limit = DEFAULT_LIMITS.subscriptionsPerConnection;
    for (const i of [0, limit - 1, limit, 9_999]) other.publish(`${prefix}.sub.${i}`, "x");
    await other.flush();
    await waitFor(() => heard.has(limit - 1), { timeoutMs: 5000, what: "the last admitted one" });
    await new Promise((r) => setTimeout(r, 300));
    assertEquals([...heard].sort((a, b) => a - b), [0, limit - 1]);

    // The calm user subscribes and hears as usual.
    const own = inboxPrefixFor(calm.hex);
    const sub = other.subscribe(`${own}.ping`, { max: 1, timeout: 5000 });
    const third = await connectAs(bus.s.natsPort, runaway);
    open.push(third);
    third.publish(`${own}.ping`, "hello");
    for await (const m of sub) assertEquals(new TextDecoder().decode(m.data), "hello");
  } finally {
    for (const nc of open) await nc.close().catch(() => {});
    await stopBus(bus);
  }
});
