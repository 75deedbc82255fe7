import { inboxPrefixFor } from "../lib/auth/acl.ts";
import { REFRESH_NOTICE_SUFFIX } from "../lib/notices.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { addBusUser, connectAs } from "./helpers/bus.ts";
import { clientBus, eachStore } from "./helpers/client_bus.ts";
import { within } from "./helpers/rooms_api.ts";

// The enforcer re-checks only a changed room's users (those who held it and
// its members now): through the API, a member added is told to refresh, one
// removed is cut, the members of a deleted room are cut, and a connected
// user with no part in the room keeps its connection.
eachStore(
  "a room change through the API re-checks its users: added told, removed and deleted cut",
  async (kind) => {
    const b = await clientBus(kind);
    const conns = [];
    try {
      const alice = await addBusUser(b.store, "alice");
      const bob = await addBusUser(b.store, "bob");
      const carol = await addBusUser(b.store, "carol");
      const dave = await addBusUser(b.store, "dave");
      const ca = await b.client(alice);
      const room = await ca.createRoom("enforce.room", undefined, {
        members: [bob.hex, carol.hex],
      });
      const nb = await connectAs(b.s.natsPort, bob);
      const nc = await connectAs(b.s.natsPort, carol);
      const nd = await connectAs(b.s.natsPort, dave);
      const ne = await connectAs(b.s.natsPort, await addBusUser(b.store, "erin"));
      conns.push(nb, nc, nd, ne);
      const notice = nd.subscribe(`${inboxPrefixFor(dave.hex)}.${REFRESH_NOTICE_SUFFIX}`, {
        max: 1,
      });
      await nd.flush();

      await ca.addMembers(room, [dave.hex]);
      const told = await within(
        1500,
        (async () => {
          for await (const m of notice) return m.string();
        })(),
      );
      assertEquals(told, "refresh", "dave, added, is told to refresh");

      await ca.removeMember(room, bob.hex);
      assert(await within(1500, nb.closed().then(() => true)), "bob, removed, is cut");
      assert(!nc.isClosed(), "carol, still a member, keeps her connection");

      await ca.deleteRoom(room);
      assert(await within(1500, nc.closed().then(() => true)), "carol, of a deleted room, is cut");
      // Dave never refreshed, so nothing he holds is wrong.
      assert(!nd.isClosed(), "dave, who never took the room into his session, is not cut");

      await ne.flush();
      assert(!ne.isClosed(), "erin, with no part in the room, keeps her connection");
    } finally {
      await Promise.allSettled(conns.map((c) => c.close()));
      await b.stop();
    }
  },
);
