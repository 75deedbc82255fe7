/**
 * What the client library does in the background reaches the program: a
 * room reload that fails (the control plane answers 503 when the server's
 * room notice asks the client to learn the new epoch) and a receive-state
 * write that fails (its directory is gone) arrive at `onError` with the room
 * and what failed, against a real serve.
 */

import { connect, type UnibusClient } from "../lib/client/client.ts";
import type { ClientErrorEvent } from "../lib/client/mod.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { addBusUser } from "./helpers/bus.ts";
import { clientBus } from "./helpers/client_bus.ts";
import { waitFor } from "./helpers/wait.ts";

/** The control plane at `target` through a proxy that can start answering 503. */
function failingProxy(target: string) {
  let failing = false;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    if (failing) {
      return Response.json({ error: "store_unavailable", message: "down" }, { status: 503 });
    }
    const url = new URL(req.url);
    const res = await fetch(`${target}${url.pathname}${url.search}`, {
      method: req.method,
      headers: req.headers,
      body: req.body ? await req.arrayBuffer() : undefined,
    });
    return new Response(await res.arrayBuffer(), { status: res.status, headers: res.headers });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    fail: () => failing = true,
    stop: () => server.shutdown(),
  };
}

Deno.test("onError hears of a failed room reload and a failed receive-state write", async () => {
  const b = await clientBus();
  const dir = await Deno.makeTempDir({ prefix: "unibus-onerror-" });
  const proxy = failingProxy(b.s.httpUrl);
  let bobClient: UnibusClient | null = null;
  try {
    const alice = await addBusUser(b.store, "alice");
    const bob = await addBusUser(b.store, "bob");
    const carol = await addBusUser(b.store, "carol");
    const events: ClientErrorEvent[] = [];
    await Deno.mkdir(`${dir}/state`);
    bobClient = await connect({
      natsServers: [`nats://127.0.0.1:${b.s.natsPort}`],
      ctrlUrls: [proxy.url],
      identity: bob.identity,
      receiveStateFile: `${dir}/state/bob.json`,
      onError: (e) => events.push(e),
    });
    const ca = await b.client(alice);
    const room = await ca.createRoom("team.errors");
    await ca.addMember(room, bob.hex);
    await bobClient.refreshSession();
    const got: string[] = [];
    await bobClient.subscribe(room, (_m, p) => got.push(new TextDecoder().decode(p)));

    // The receive state's directory disappears: the next write fails.
    await Deno.remove(`${dir}/state`, { recursive: true });
    await ca.publish(room, "hello");
    await waitFor(() => got.includes("hello") || null, { what: "bob hears alice" });
    const write = await waitFor(
      () => events.find((e) => e.what === "receive-state-write") ?? null,
      { what: "a receive-state-write event", timeoutMs: 15_000 },
    );
    assert(write.error instanceof Error && write.error.message.length > 0);

    // The control plane fails for bob; a membership change makes the
    // server tell bob's client to reload the room, and the reload fails.
    proxy.fail();
    await ca.addMember(room, carol.hex);
    const reload = await waitFor(
      () => events.find((e) => e.what === "reload") ?? null,
      { what: "a reload event", timeoutMs: 30_000 },
    );
    assertEquals(reload.room, room.id);
    assert(reload.error instanceof Error);
  } finally {
    await bobClient?.close().catch(() => {});
    await proxy.stop();
    await b.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
