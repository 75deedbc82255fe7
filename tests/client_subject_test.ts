/**
 * The client library applies the subject grammar before anything leaves the
 * process: a bad subject is a typed error, not a request the server refuses.
 */

import { connect } from "../lib/client/client.ts";
import { InvalidSubjectError } from "../lib/client/errors.ts";
import { assertEquals, assertRejects } from "./helpers/assert.ts";
import { addBusUser } from "./helpers/bus.ts";
import { startBus, stopBus } from "./helpers/rooms_api.ts";

Deno.test("client: createRoom and room() refuse a subject outside the grammar with InvalidSubjectError", async () => {
  const bus = await startBus();
  try {
    const alice = await addBusUser(bus.store, "alice");
    const client = await connect({
      natsServers: [`nats://127.0.0.1:${bus.s.natsPort}`],
      ctrlUrls: [bus.s.httpUrl],
      identity: alice.identity,
    });
    try {
      // Sent, each would come back as the server's 400: a ControlPlaneError.
      for (
        const [subject, rule] of [
          ["chat.ops\u0000x", "control_character"],
          ["chat.\u2603", "not_ascii"],
          ["chat.*", "wildcard"],
          ["_INBOX.x", "reserved_prefix"],
        ]
      ) {
        const err = await assertRejects(() => client.createRoom(subject), InvalidSubjectError);
        assertEquals([err.code, err.rule], ["invalid_subject", rule]);
        const lookup = await assertRejects(() => client.room(subject), InvalidSubjectError);
        assertEquals(lookup.rule, rule);
      }
      assertEquals(await bus.store.listRoomsForMember(alice.hex), []);
      // A valid subject still works through the same calls.
      const room = await client.createRoom("chat.ops");
      assertEquals((await client.room("chat.ops")).roomId, room.id);
    } finally {
      await client.close();
    }
  } finally {
    await stopBus(bus);
  }
});
