/**
 * A damaged control-plane record (a member list that does not parse, a
 * member index that is not a list) is unavailable, never a crash: HTTP
 * answers 503 JSON, the log names the record's key, and it locks its members
 * out of that room only. Their logins go on, with every other room granted.
 */

import { Kvm } from "@nats-io/kv";
import { connect as natsConnect } from "@nats-io/transport-node";
import { NativeNkeyPair, nkeyAuthenticatorFor, Prefix } from "../lib/auth/nkey.ts";
import { loadIdentity } from "../lib/identity/identity.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { addBusUser, connectAs, publishDenied } from "./helpers/bus.ts";
import { clientBus } from "./helpers/client_bus.ts";
import { as } from "./helpers/rooms_api.ts";

Deno.test("a damaged member list locks out that room only; a damaged member index that user only", async () => {
  const b = await clientBus("kv");
  try {
    const alice = await addBusUser(b.store, "alice");
    const bob = await addBusUser(b.store, "bob");
    const carol = await addBusUser(b.store, "carol");
    const dave = await addBusUser(b.store, "dave");
    const ca = await b.client(alice);
    const damaged = await ca.createRoom("room.damaged", undefined, { members: [bob.hex] });
    const intact = await ca.createRoom("room.intact", undefined, { members: [bob.hex, carol.hex] });
    await ca.close();

    const id = await loadIdentity(b.internalId);
    const nc = await natsConnect({
      servers: `127.0.0.1:${b.s.natsPort}`,
      authenticator: nkeyAuthenticatorFor(new NativeNkeyPair(Prefix.User, id.signSeed)),
    });
    try {
      const kvm = new Kvm(nc);
      const members = await kvm.open("UNIBUS_members");
      const keys: string[] = [];
      for await (const k of await members.keys()) keys.push(k);
      const key = keys.find((k) => k.startsWith(damaged.id));
      assert(key, `the damaged room's member record among ${keys}`);
      await members.put(key, "{not json");
      // Carol's own index of rooms: an object, not a list.
      await (await kvm.open("UNIBUS_rooms_by_member")).put(carol.hex, '{"a":1}');
      // Dave's own connection limit: not a count (a limit no comparison can reach).
      const users = await kvm.open("UNIBUS_users");
      const rec = (await users.get(dave.hex))!.json<Record<string, unknown>>();
      await users.put(dave.hex, JSON.stringify({ ...rec, maxConnections: "lots" }));
    } finally {
      await nc.close();
    }

    // Bob still logs in; the intact room is his, the damaged one is not granted.
    const nb = await connectAs(b.s.natsPort, bob);
    try {
      nb.publish(intact.subject, "still here");
      await nb.flush();
      await publishDenied(nb, damaged.subject);
    } finally {
      await nb.close();
    }
    // HTTP on the damaged room: 503 JSON, no 500.
    const got = await as({ s: b.s, store: b.store }, alice.identity).get(`/v1/rooms/${damaged.id}`);
    assertEquals([got.status, got.body?.error], [503, "store_unavailable"]);
    // Carol's index cannot say where to look: her login fails closed, others are unaffected.
    await assertRejects(() => connectAs(b.s.natsPort, carol), Error, "Authorization Violation");
    await assertRejects(() => connectAs(b.s.natsPort, dave), Error, "Authorization Violation");
    const na = await connectAs(b.s.natsPort, alice);
    await na.close();
    // The log names each damaged record's key.
    const said = b.s.lines.filter((l) => l.msg === "damaged control-plane record").map((l) =>
      String(l.key)
    );
    assert(said.some((k) => k.startsWith(`members/${damaged.id}`)), said.join(", "));
    assert(said.includes(`roomsByMember/${carol.hex}`), said.join(", "));
    assert(said.includes(`users/${dave.hex}`), said.join(", "));
  } finally {
    await b.stop();
  }
});

Deno.test("a record written by a newer unibus is refused by name: that login fails closed, HTTP answers 503 record_too_new, its room is left out; a record without a format still reads", async () => {
  const b = await clientBus("kv");
  try {
    const alice = await addBusUser(b.store, "alice");
    const bob = await addBusUser(b.store, "bob");
    const ca = await b.client(alice);
    const newer = await ca.createRoom("room.newer", undefined, { members: [bob.hex] });
    const older = await ca.createRoom("room.older", undefined, { members: [bob.hex] });
    await ca.close();

    const id = await loadIdentity(b.internalId);
    const nc = await natsConnect({
      servers: `127.0.0.1:${b.s.natsPort}`,
      authenticator: nkeyAuthenticatorFor(new NativeNkeyPair(Prefix.User, id.signSeed)),
    });
    try {
      const kvm = new Kvm(nc);
      const users = await kvm.open("UNIBUS_users");
      const rooms = await kvm.open("UNIBUS_rooms");
      // What this version writes carries its format.
      const bobRecord = (await users.get(bob.hex))!.json<Record<string, unknown>>();
      assertEquals(bobRecord.format, 1);
      // A newer unibus's records: bob's user record and one room's id record.
      await users.put(bob.hex, JSON.stringify({ ...bobRecord, format: 2 }));
      const roomRecord = (await rooms.get(`id.${newer.id}`))!.json<Record<string, unknown>>();
      await rooms.put(`id.${newer.id}`, JSON.stringify({ ...roomRecord, format: 2 }));
      // Records from before formats were numbered: alice's and the other room's, no field.
      const { format: _a, ...aliceOld } = (await users.get(alice.hex))!.json<
        Record<string, unknown>
      >();
      await users.put(alice.hex, JSON.stringify(aliceOld));
      const { format: _r, ...olderOld } = (await rooms.get(`id.${older.id}`))!.json<
        Record<string, unknown>
      >();
      await rooms.put(`id.${older.id}`, JSON.stringify(olderOld));
    } finally {
      await nc.close();
    }

    // Bob's own record is unreadable here: his login is refused, not guessed at.
    await assertRejects(() => connectAs(b.s.natsPort, bob), Error, "Authorization Violation");
    const api = as({ s: b.s, store: b.store }, alice.identity);
    const bobView = await api.get(`/v1/users/${bob.hex}`);
    assertEquals([bobView.status, bobView.body?.error], [503, "record_too_new"]);
    assert(String(bobView.body?.message).includes("newer unibus"), JSON.stringify(bobView.body));
    const roomView = await api.get(`/v1/rooms/${newer.id}`);
    assertEquals([roomView.status, roomView.body?.error], [503, "record_too_new"]);
    // Alice, on a record without a format, logs in; the older-format room is
    // hers, the newer one is left out of her grants.
    const na = await connectAs(b.s.natsPort, alice);
    try {
      na.publish(older.subject, "still here");
      await na.flush();
      await publishDenied(na, newer.subject);
    } finally {
      await na.close();
    }
    assertEquals((await api.get(`/v1/rooms/${older.id}`)).status, 200);
    // The log names each record and its format.
    const said = b.s.lines.filter((l) => l.msg === "control-plane record written by a newer unibus")
      .map((l) => `${l.key} ${l.format}`);
    assert(said.includes(`users/${bob.hex} 2`), said.join(", "));
    assert(said.includes(`rooms/id.${newer.id} 2`), said.join(", "));
  } finally {
    await b.stop();
  }
});
