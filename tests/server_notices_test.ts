/**
 * The server's notices on a user's inbox, as protocol.md §3.3 states them:
 * `.unibus.refresh` carries "refresh" when rights grew, `.unibus.room` the
 * room id after each accepted membership change, to the members of the new
 * epoch and the member added or removed; creating a room sends no room notice.
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { inboxPrefixFor } from "../lib/auth/acl.ts";
import { REFRESH_NOTICE_SUFFIX } from "../server/auth/enforcer.ts";
import { ROOM_NOTICE_SUFFIX } from "../server/rooms/notices.ts";
import type { RoomView } from "../server/rooms/state.ts";
import { assertEquals } from "./helpers/assert.ts";
import { addBusUser, type BusUser, connectAs } from "./helpers/bus.ts";
import { as, genesis, nextChange, startBus, stopBus } from "./helpers/rooms_api.ts";
import { waitFor } from "./helpers/wait.ts";

/** Every notice `user` receives, by kind, in order. */
async function listen(nc: NatsConnection, user: BusUser) {
  const got = { refresh: [] as string[], room: [] as string[] };
  nc.subscribe(`${inboxPrefixFor(user.hex)}.${REFRESH_NOTICE_SUFFIX}`, {
    callback: (_e, m) => void got.refresh.push(m.string()),
  });
  nc.subscribe(`${inboxPrefixFor(user.hex)}.${ROOM_NOTICE_SUFFIX}`, {
    callback: (_e, m) => void got.room.push(m.string()),
  });
  await nc.flush();
  return got;
}

Deno.test("notices: refresh when rights grow, the room id after each change, none on create", async () => {
  const bus = await startBus();
  const open: NatsConnection[] = [];
  try {
    const alice = await addBusUser(bus.store, "alice");
    const bob = await addBusUser(bus.store, "bob");
    const na = await connectAs(bus.s.natsPort, alice);
    open.push(na);
    const nb = await connectAs(bus.s.natsPort, bob);
    open.push(nb);
    const atAlice = await listen(na, alice);
    const atBob = await listen(nb, bob);

    const created = await as(bus, alice.identity).post<RoomView>("/v1/rooms", {
      change: genesis(alice.identity, { subject: "notice.room" }),
    });
    assertEquals(created.status, 201);
    let view = created.body;
    // The creator's rights grew. Both kinds come from the same connection of
    // the node, in order, so by the time the refresh is here a room notice
    // for the create would have been too.
    await waitFor(() => atAlice.refresh.length === 1, { what: "alice's refresh notice" });
    assertEquals(atAlice.refresh, ["refresh"]);
    assertEquals(atAlice.room, [], "no room notice on create");

    const added = await as(bus, alice.identity).post<RoomView>(`/v1/rooms/${view.id}/changes`, {
      change: nextChange(view, alice.identity, "add", bob.identity),
    });
    assertEquals(added.status, 200);
    view = added.body;
    await waitFor(
      () => atAlice.room.length === 1 && atBob.room.length === 1 && atBob.refresh.length === 1,
      { what: "the room notices of the add and bob's refresh notice" },
    );
    assertEquals([atAlice.room, atBob.room, atBob.refresh], [[view.id], [view.id], ["refresh"]]);

    const removed = await as(bus, alice.identity).post<RoomView>(`/v1/rooms/${view.id}/changes`, {
      change: nextChange(view, alice.identity, "remove", bob.identity),
    });
    assertEquals(removed.status, 200);
    // (Bob is sent one too, but his connection is cut right after, so whether
    // it arrives first is not something to assert on.)
    await waitFor(() => atAlice.room.length === 2, { what: "alice's room notice of the removal" });
    assertEquals(atAlice.room[1], view.id);
    assertEquals(atAlice.refresh, ["refresh"], "a narrowing sends no refresh");
  } finally {
    for (const nc of open) await nc.close().catch(() => {});
    await stopBus(bus);
  }
});
