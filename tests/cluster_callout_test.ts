/**
 * The auth callout made cluster-wide, on a real three-node nats-server
 * cluster: one shared issuer, so any node's answer is accepted by every
 * server; connects keep working when the node that answered last is dead;
 * the node that holds a connection enforces it, whoever answered. The store
 * is one SQLite file standing in for the replicated KV (phase 2 swaps it).
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { DEFAULT_LIMITS } from "../server/limits.ts";
import { createLogger } from "../lib/log.ts";
import { openSqliteStore } from "../lib/store/sqlite.ts";
import { startAuthCallout } from "../server/auth/callout.ts";
import { startEnforcer } from "../server/auth/enforcer.ts";
import { type Session, SessionRegistry } from "../server/auth/sessions.ts";
import {
  GRANT_SUBJECT_PREFIX,
  grantPublisher,
  startSessionFeed,
} from "../server/cluster/session_feed.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { addBusUser, addRoom, connectAs } from "./helpers/bus.ts";
import { startNatsCluster, waitUntil } from "./helpers/nats_cluster.ts";

const quiet = createLogger("test", { sink: () => {} });

Deno.test("any node answers the callout for any node; the holding node cuts a revoked user in < 1 s", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-cc-" });
  const store = await openSqliteStore(`${dir}/unibus.db`);
  const c = await startNatsCluster(3);
  const conns: NatsConnection[] = [];
  const stops: Array<() => Promise<void>> = [];
  try {
    const alice = await addBusUser(store, "alice");
    await addRoom(store, "r1", "cluster.room", [alice]);
    // Callouts on n2 and n3 only: every admission on n1 is answered by a peer.
    const answeredBy: string[] = [];
    for (const i of [1, 2]) {
      const app = await c.connectAs(i, "internal");
      conns.push(app);
      const publish = grantPublisher(app);
      const callout = startAuthCallout({
        limits: DEFAULT_LIMITS,
        nc: app,
        issuer: c.issuer,
        store,
        sessions: new SessionRegistry(),
        log: quiet,
        grant: (s) => {
          answeredBy.push(c.nodes[i].name);
          publish(s);
        },
      });
      stops.push(() => callout.stop());
      await app.flush();
    }
    // n1 enforces its own connections, learned from grants for its server.
    const sys1 = await c.connectAs(0, "system");
    const app1 = await c.connectAs(0, "internal");
    conns.push(sys1, app1);
    const sessions = new SessionRegistry();
    const feed = startSessionFeed({ sys: sys1, app: app1, sessions, log: quiet, reconcileMs: 300 });
    const enforcer = startEnforcer({ sys: sys1, notices: app1, store, sessions, log: quiet });
    stops.push(() => feed.stop(), () => enforcer.stop());
    await app1.flush();
    // Callout interest must have crossed the routes before the first connect.
    const grantsSeen: Session[] = [];
    const watch = app1.subscribe(`${GRANT_SUBJECT_PREFIX}.*`, {
      callback: (_e, m) => void grantsSeen.push(m.json<Session>()),
    });

    const first = await waitUntil(
      "a connect on n1 answered by a peer",
      30_000,
      () => connectAs(c.nodes[0].clientPort, alice, { reconnect: false }),
    );
    conns.push(first);
    assertEquals(first.info?.server_name, "n1");
    const answerer = answeredBy.at(-1)!;
    assert(answerer === "n2" || answerer === "n3", `answered by ${answerer}`);
    await waitUntil(
      "n1 to record the connection",
      5000,
      () => sessions.forUser(alice.hex).length === 1,
    );
    assertEquals(grantsSeen[0].serverId, sys1.info?.server_id);

    // The node that answered last dies; the other one answers from now on.
    const dead = c.nodes.find((n) => n.name === answerer)!;
    await dead.server.stop();
    const second = await waitUntil(
      "a connect on n1 with the last answerer dead",
      30_000,
      () => connectAs(c.nodes[0].clientPort, alice, { reconnect: false }),
    );
    conns.push(second);
    assertEquals(answeredBy.at(-1), answerer === "n2" ? "n3" : "n2");
    await waitUntil(
      "both connections tracked on n1",
      5000,
      () => sessions.forUser(alice.hex).length === 2,
    );

    // A revoke cuts every connection n1 holds, though n1 answered none of them.
    const closed = Promise.all([first.closed(), second.closed()]);
    const t0 = performance.now();
    await store.revokeUser(alice.hex);
    enforcer.recheckNow();
    await Promise.race([
      closed,
      new Promise((_, reject) => setTimeout(() => reject(new Error("not cut within 1 s")), 1000)),
    ]);
    assert(performance.now() - t0 < 1000);
    watch.unsubscribe();
  } finally {
    for (const s of stops.reverse()) await s().catch(() => {});
    await Promise.all(conns.map((nc) => nc.close().catch(() => {})));
    await store.close();
    await c.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
