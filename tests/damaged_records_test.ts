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
    const na = await connectAs(b.s.natsPort, alice);
    await na.close();
    // The log names each damaged record's key.
    const said = b.s.lines.filter((l) => l.msg === "damaged control-plane record").map((l) =>
      String(l.key)
    );
    assert(said.some((k) => k.startsWith(`members/${damaged.id}`)), said.join(", "));
    assert(said.includes(`roomsByMember/${carol.hex}`), said.join(", "));
  } finally {
    await b.stop();
  }
});
