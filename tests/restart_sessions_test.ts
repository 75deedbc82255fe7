/**
 * Sessions across a nats-server restart (issue 8): after serve's nats-server
 * child was restarted, the sessions admitted by the old instance stayed in
 * the enforcer, and deleting such a user's room made serve log "could not cut
 * a connection; will retry" every 250 ms without end.
 */

import { connect } from "@nats-io/transport-node";
import { NativeNkeyPair, nkeyAuthenticatorFor, Prefix } from "../lib/auth/nkey.ts";
import { userPermissions } from "../lib/auth/acl.ts";
import { createLogger } from "../lib/log.ts";
import { openSqliteStore } from "../lib/store/sqlite.ts";
import { startEnforcer } from "../server/auth/enforcer.ts";
import { SessionRegistry } from "../server/auth/sessions.ts";
import { resolveNatsServerBin } from "../server/nats/binary.ts";
import { renderNatsConfig } from "../server/nats/config.ts";
import { ManagedNatsServer } from "../server/nats/managed_server.ts";
import type { RoomView } from "../server/rooms/state.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { addBusUser, connectAs } from "./helpers/bus.ts";
import { freePort } from "./helpers/ports.ts";
import { as, genesis, startBus, stopBus } from "./helpers/rooms_api.ts";
import type { UnibusProcess } from "./helpers/serve_process.ts";

const CANNOT_CUT = "could not cut a connection; will retry";

/** Resolves once `n` log lines match `pred`, or fails after `ms`. */
function waitForCount(
  p: UnibusProcess,
  pred: (l: Record<string, unknown>) => boolean,
  n: number,
  ms = 15_000,
) {
  return p.waitFor(() => p.lines.filter(pred).length >= n, ms);
}

Deno.test("after nats-server is killed and restarted, the old sessions are dropped and a room delete cuts without a retry loop", async () => {
  const bus = await startBus();
  try {
    const alice = await addBusUser(bus.store, "alice");
    const created = await as(bus, alice.identity).post<RoomView>("/v1/rooms", {
      change: genesis(alice.identity, { subject: "restart.room" }),
    });
    assertEquals(created.status, 201);
    const admitted = (l: Record<string, unknown>) =>
      l.msg === "connection admitted" && l.signPub === alice.hex;
    const nc = await connectAs(bus.s.natsPort, alice, { reconnect: true });
    try {
      await waitForCount(bus.s, admitted, 1);

      Deno.kill(bus.s.natsPid, "SIGKILL");
      await bus.s.waitFor((l) => l.msg === "nats-server restarted");
      // Alice's client reconnects to the new instance and is admitted again.
      await waitForCount(bus.s, admitted, 2);
      const dropped = await bus.s.waitFor((l) =>
        l.msg === "sessions of a gone nats-server dropped"
      );
      assert(Number(dropped.sessions) >= 1, JSON.stringify(dropped));

      // Deleting the room narrows Alice's rights: her live connection (on the
      // new server) is cut, and nothing is left that points at the old one.
      assertEquals((await as(bus, alice.identity).del(`/v1/rooms/${created.body.id}`)).status, 204);
      const cut = (l: Record<string, unknown>) =>
        l.msg === "connection cut" && l.signPub === alice.hex;
      await waitForCount(bus.s, cut, 1);
      // The loop logged every 250 ms; over the next six passes at most the
      // one line the issue allows may appear (an upper bound over a bounded
      // window: this is the behaviour under test, not a timing figure).
      const deadline = Date.now() + 1500;
      while (Date.now() < deadline) {
        const n = bus.s.lines.filter((l) => l.msg === CANNOT_CUT).length;
        assert(n <= 1, `"${CANNOT_CUT}" logged ${n} times`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await nc.close();
    }
  } finally {
    await stopBus(bus);
  }
});

Deno.test("a cut whose nats-server is gone forgets the session with one log line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-restart-" });
  const logged: Record<string, unknown>[] = [];
  const log = createLogger("test", { sink: (l) => logged.push(JSON.parse(l)) });
  const issuer = NativeNkeyPair.generate(Prefix.Account);
  const internal = NativeNkeyPair.generate(Prefix.User);
  const system = NativeNkeyPair.generate(Prefix.User);
  const port = freePort();
  await Deno.writeTextFile(
    `${dir}/nats.conf`,
    renderNatsConfig({
      serverName: "restart-test",
      host: "127.0.0.1",
      port,
      jetStreamDir: `${dir}/js`,
      pidFile: `${dir}/nats.pid`,
      debug: false,
      trace: false,
      monitorPort: null,
      auth: {
        mode: "enforce",
        calloutIssuer: issuer.getPublicKey(),
        internalUser: internal.getPublicKey(),
        systemUser: system.getPublicKey(),
      },
      tls: null,
    }),
  );
  const nats = new ManagedNatsServer({
    binary: (await resolveNatsServerBin({ env: Deno.env.toObject() })).path,
    configPath: `${dir}/nats.conf`,
    host: "127.0.0.1",
    port,
    quiet: true,
    log,
  });
  const store = await openSqliteStore(`${dir}/unibus.db`);
  await nats.start();
  const conn = (user: NativeNkeyPair) =>
    connect({ servers: `127.0.0.1:${port}`, authenticator: nkeyAuthenticatorFor(user) });
  const sys = await conn(system);
  const app = await conn(internal);
  const sessions = new SessionRegistry();
  const enforcer = startEnforcer({ sys, notices: app, store, sessions, log, intervalMs: 50 });
  try {
    const alice = await addBusUser(store, "alice");
    // A session held by a server id nothing answers for, as one admitted by
    // a nats-server instance that has since died; then Alice is revoked.
    sessions.add({
      signPub: alice.hex,
      serverId: "NDEADSERVER0000000000000000000000000000000000000000000000",
      cid: 7,
      permissions: userPermissions(alice.hex, []),
      admittedAt: Date.now(),
    });
    await store.revokeUser(alice.hex);
    enforcer.recheckNow();
    const deadline = Date.now() + 10_000;
    while (!logged.some((l) => l.msg === "connection's nats-server is gone; session forgotten")) {
      if (Date.now() > deadline) {
        throw new Error(`the session was not forgotten; log: ${JSON.stringify(logged.slice(-5))}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    assertEquals(sessions.size, 0);
    assertEquals(logged.filter((l) => l.msg === CANNOT_CUT).length, 0);
    // The live server is found by ping, and a registry holding only its
    // sessions keeps them (Bob is active and his rights match: nothing to cut).
    const bob = await addBusUser(store, "bob");
    sessions.add({
      signPub: bob.hex,
      serverId: sys.info!.server_id,
      cid: 1,
      permissions: userPermissions(bob.hex, []),
      admittedAt: Date.now(),
    });
    await enforcer.dropGoneServers();
    assertEquals(sessions.size, 1);
  } finally {
    await enforcer.stop();
    await sys.close();
    await app.close();
    await store.close();
    await nats.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
