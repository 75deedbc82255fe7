/**
 * lib/client/client.ts's subscription reads an encrypted room's packets in
 * place (no copy of `msg.data`), which is only sound while nats.js never
 * writes again into the bytes of a message it delivered: neither the socket
 * read buffers (under Deno's node:net) nor the buffer it joins a message
 * split across reads into. This checks that with the versions in deno.lock,
 * so an upgrade that starts reusing them fails here instead of corrupting
 * packets that wait in a subscription's queue.
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { assert, assertEquals } from "./helpers/assert.ts";
import { startNatsServer } from "./helpers/nats_server.ts";
import { waitFor } from "./helpers/wait.ts";

Deno.test("nats.js never rewrites the bytes of a message it already delivered", async () => {
  const ns = await startNatsServer();
  let sub: NatsConnection | null = null;
  let pub: NatsConnection | null = null;
  try {
    sub = await ns.connect();
    pub = await ns.connect();
    // Sizes from a few bytes to several socket reads (64 KiB each), so that
    // messages land inside one read, across two, and across many; each
    // message's bytes are all its own index, so any overwrite shows.
    const sizes = [7, 300, 5000, 40_000, 70_000, 200_000, 600_000];
    const count = 120;
    const kept: Uint8Array[] = [];
    sub.subscribe("t.buffers", {
      callback: (_err, msg) => {
        kept.push(msg.data);
      },
    });
    await sub.flush();
    for (let i = 0; i < count; i++) {
      pub.publish("t.buffers", new Uint8Array(sizes[i % sizes.length]).fill(i));
    }
    await pub.flush();
    await waitFor(() => kept.length === count, {
      timeoutMs: 20_000,
      what: `${count} messages to arrive`,
    });
    for (const [i, data] of kept.entries()) {
      assertEquals(data.length, sizes[i % sizes.length], `message ${i} length`);
      assert(data.every((b) => b === i), `message ${i} was changed after it was delivered`);
    }
  } finally {
    await pub?.close();
    await sub?.close();
    await ns.stop({ remove: true });
  }
});
