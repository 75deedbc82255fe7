/**
 * The client library against the holes an outside attack found (issue 8):
 * leaving a room, where replies may go, replays across a receiver restart,
 * and a deleted room's cut connection. Real serve, real NATS, real crypto.
 */

import { UnibusError } from "../lib/client/errors.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { addBusUser } from "./helpers/bus.ts";
import { clientBus } from "./helpers/client_bus.ts";

const dec = new TextDecoder();

Deno.test("a requester cannot make a member reply into another room: only under the requester's inbox", async () => {
  const b = await clientBus();
  const alice = await addBusUser(b.store, "alice");
  const bob = await addBusUser(b.store, "bob");
  const carol = await addBusUser(b.store, "carol");
  const ca = await b.client(alice);
  const cb = await b.client(bob);
  const cc = await b.client(carol);
  const tap = await b.tap();
  try {
    // Bob answers requests in the oracle room; he is also in alice's private
    // room, where Carol is not.
    const oracle = await ca.createRoom("agent.oracle.in");
    await ca.addMember(oracle, bob.hex);
    await ca.addMember(oracle, carol.hex);
    const privateRoom = await ca.createRoom("alice.private");
    await ca.addMember(privateRoom, bob.hex);
    await cb.refreshSession();
    await cc.refreshSession();
    const refused: unknown[] = [];
    await cb.subscribe(oracle, (meta, data) => {
      if (meta.reply) {
        cb.respond(oracle, meta, `answer to ${dec.decode(data)}`).catch((e) => refused.push(e));
      }
    });
    const leaked = tap.subscribe("alice.private");
    const carolsInbox = tap.subscribe(`_INBOX.${carol.hex}.>`);
    await tap.flush();

    // Carol signs a genuine request but sets its reply subject to the room
    // she is not in.
    const session = await cc.room(oracle.id);
    cc.nats.publish(oracle.subject, session.seal([new TextEncoder().encode("inject")]), {
      reply: privateRoom.subject,
    });
    // Then an honest request: its reply, on the same connection of Bob's,
    // comes after anything the first one made him publish.
    const honest = await cc.request(oracle, "honest");
    assertEquals(dec.decode(honest.plaintext), "answer to honest");
    for await (const _ of carolsInbox) break; // the tap saw the honest reply too
    await tap.flush();
    assertEquals(leaked.getProcessed(), 0, "nothing was published into alice.private");
    assertEquals(refused.length, 1);
    assert(refused[0] instanceof UnibusError && refused[0].code === "reply_refused");
  } finally {
    await b.stop();
  }
});
