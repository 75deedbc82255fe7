import { connect, type UnibusClient } from "../lib/client/client.ts";
import { openSqliteStore } from "../lib/store/sqlite.ts";
import { assertEquals, assertRejects } from "./helpers/assert.ts";
import { addBusUser, addRoom, connectAs } from "./helpers/bus.ts";
import { collector } from "./helpers/client_bus.ts";
import { startServe } from "./helpers/serve_process.ts";
import { makeTestPki, type TestPki, tlsEnforceArgs } from "./helpers/tls.ts";

/** `serve --bus-auth enforce` with TLS on both planes from `pki`. */
function tlsServe(pki: TestPki) {
  return startServe({ extraArgs: tlsEnforceArgs(pki) });
}

Deno.test("--tls-cert/--tls-key serve HTTPS and NATS over TLS, pinned to --tls-ca", async () => {
  const pki = await makeTestPki();
  const s = await tlsServe(pki);
  const client = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(pki.caCert)] });
  const store = await openSqliteStore(`${s.dataDir}/unibus.db`);
  try {
    const res = await fetch(`https://127.0.0.1:${s.httpPort}/healthz`, { client });
    assertEquals(res.status, 200);
    assertEquals((await res.json()).posture.tls, true);

    // Plain HTTP to the HTTPS port gets nothing useful.
    await assertRejects(() => fetch(`http://127.0.0.1:${s.httpPort}/healthz`), TypeError);

    const alice = await addBusUser(store, "alice");
    await addRoom(store, "r", "tls.room", [alice]);
    const nc = await connectAs(s.natsPort, alice, { caFile: pki.caCert, tls: true });
    const sub = nc.subscribe("tls.room", { max: 1 });
    nc.publish("tls.room", "over tls");
    for await (const m of sub) assertEquals(m.string(), "over tls");
    await nc.close();

    // A client that does not speak TLS is refused by nats-server itself.
    await assertRejects(() => connectAs(s.natsPort, alice), Error);
  } finally {
    client.close();
    await store.close();
    await s.stop();
    await pki.cleanup();
  }
});

Deno.test("a client on a TLS data plane refreshes its session: creates a room and talks in it", async () => {
  // nats.js reconnect() hung for good over Deno's node:tls (a zero-length
  // write never called back) until lib/nats/tls_empty_write.ts.
  const pki = await makeTestPki();
  const s = await tlsServe(pki);
  const store = await openSqliteStore(`${s.dataDir}/unibus.db`);
  let client: UnibusClient | null = null;
  try {
    const ada = await addBusUser(store, "ada", "admin");
    client = await connect({
      natsServers: [`tls://127.0.0.1:${s.natsPort}`],
      ctrlUrls: [`https://127.0.0.1:${s.httpPort}`],
      identity: ada.identity,
      tls: { caFile: pki.caCert },
    });
    // createRoom refreshes the session (10 s bound inside the client).
    const room = await client.createRoom("tls.refresh", {
      encrypt: true,
      sign: true,
      persist: false,
    });
    const got = collector(1);
    await client.subscribe(room.id, (_m, text) => got.push(new TextDecoder().decode(text)));
    await client.publish(room.id, "after the refresh");
    assertEquals(await got.wait(), ["after the refresh"]);
  } finally {
    await client?.close();
    await store.close();
    await s.stop();
    await pki.cleanup();
  }
});
