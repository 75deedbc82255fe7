/**
 * JetStream answers to any reply subject: a bus user who owns one persisted
 * room can aim a stream's ack, or a direct get of bytes it stored, at any
 * subject of the account the stream runs in. Played against one node on
 * each store (the three-node run is a step of tests/cluster_test.ts):
 * nothing but the attacker's own stream changes, and no client acts on a
 * reflected answer.
 */

import { addUserFromIdentity, busUserOf } from "./helpers/bus.ts";
import { clientBus, eachStore } from "./helpers/client_bus.ts";
import { runReflectionAttacks } from "./helpers/reflection.ts";

eachStore(
  "reflected JetStream answers change no control plane, stream, room or notice",
  async (kind) => {
    const b = await clientBus(kind);
    try {
      await runReflectionAttacks({
        natsUrls: [`nats://127.0.0.1:${b.s.natsPort}`],
        internalIdFile: b.internalId,
        register: async (id) => void await addUserFromIdentity(b.store, id),
        client: (id) => b.client(busUserOf(id)),
      });
    } finally {
      await b.stop();
    }
  },
);
