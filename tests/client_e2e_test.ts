import {
  ControlPlaneError,
  MembershipVerificationError,
  UnibusError,
} from "../lib/client/errors.ts";
import { RoomSession } from "../lib/client/room_session.ts";
import { wireSubject } from "../lib/auth/acl.ts";
import { NoRespondersError, RequestError, TimeoutError } from "@nats-io/transport-node";
import { toHex } from "../lib/e2e/bytes.ts";
import { encodePacket } from "../lib/e2e/packet.ts";
import { generateIdentity, type Identity } from "../lib/identity/identity.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { addBusUser, connectAs } from "./helpers/bus.ts";
import {
  type ClientBus,
  clientBus,
  collector,
  eachStore,
  roomOfTwo,
} from "./helpers/client_bus.ts";
import { waitFor } from "./helpers/wait.ts";

const dec = new TextDecoder();

/**
 * Runs `send` (which publishes into a persisted room and flushes), then waits
 * until the room's stream holds every packet the server routed on the room's
 * subject. The client batches messages into packets, so the count to wait
 * for is what a tap saw, not the number of messages.
 */
async function sendAndStore(
  b: ClientBus,
  room: { id: string; subject: string; policy: { persist: boolean } },
  send: () => Promise<void>,
): Promise<void> {
  const tap = await b.tap();
  let packets = 0;
  tap.subscribe(wireSubject(room), {
    callback: () => {
      packets++;
    },
  });
  await tap.flush();
  await send();
  // The server queued every packet for the tap before it answers this ping.
  await tap.flush();
  const { jetstreamManager } = await import("@nats-io/jetstream");
  const jsm = await jetstreamManager(await b.roomsTap());
  await waitFor(
    async () =>
      packets > 0 && (await jsm.streams.info(`ROOM_${room.id}`)).state.messages === packets,
    { what: `room ${room.id}'s stream to store all the packets sent (${packets})` },
  );
}

eachStore(
  "two members exchange messages in both directions, authenticated to their sender",
  async (kind) => {
    const b = await clientBus(kind);
    try {
      const { alice, bob, ca, cb, room } = await roomOfTwo(b, "agent.scout.in");
      const atBob = collector(3);
      const atAlice = collector(3);
      await cb.subscribe(room, (m, p) => {
        if (m.sender === alice.hex) atBob.push(dec.decode(p));
      });
      await ca.subscribe(room, (m, p) => {
        if (m.sender === bob.hex) atAlice.push(dec.decode(p));
      });
      for (const t of ["a1", "a2", "a3"]) ca.publish(room, t);
      for (const t of ["b1", "b2", "b3"]) cb.publish(room, t);
      assertEquals(await atBob.wait(), ["a1", "a2", "a3"]);
      assertEquals(await atAlice.wait(), ["b1", "b2", "b3"]);
    } finally {
      await b.stop();
    }
  },
);

Deno.test("a non-member, even the operator with full NATS rights, sees only ciphertext", async () => {
  const b = await clientBus();
  try {
    const alice = await addBusUser(b.store, "alice");
    const ca = await b.client(alice);
    const tap = await b.tap();
    const room = await ca.createRoom("secret.room");
    const sub = tap.subscribe("secret.room", { max: 1 });
    await tap.flush();
    await ca.publish(room, "the plaintext nobody else may read");
    for await (const m of sub) {
      assert(!dec.decode(m.data).includes("plaintext"), "no plaintext on the wire");
      // And without a sealed key, a RoomSession for a stranger cannot open it.
      const stranger = generateIdentity("stranger");
      const view = await ca.control.getRoom(room.id);
      const session = new RoomSession(stranger, view, []);
      const r = session.receive(m.data);
      assertEquals(r.kind, "dropped");
    }
    // Nor is it in the server's database.
    const dbBytes = await Deno.readFile(`${b.s.dataDir}/unibus.db`);
    assert(!dec.decode(dbBytes).includes("the plaintext nobody"), "no plaintext at rest");
  } finally {
    await b.stop();
  }
});

eachStore("a removed member cannot decrypt what is sent after its removal", async (kind) => {
  const b = await clientBus(kind);
  try {
    const { bob, ca, cb, room } = await roomOfTwo(b, "team.shared");
    const tap = await b.tap();
    // Bob's state as it was while he was a member: keys of epoch 1.
    const bobSession = await cb.room(room.id);
    assert(bobSession.keyFor(1) !== undefined, "bob holds epoch 1's key");
    const info = await ca.removeMember(room, bob.hex);
    assertEquals(info.epoch, 2);
    const sub = tap.subscribe("team.shared", { max: 1 });
    await tap.flush();
    await ca.publish(room, "after bob left");
    for await (const m of sub) {
      // Even handed the ciphertext by a colluding server, Bob's keys do not open it.
      const r = bobSession.receive(m.data);
      assert(r.kind !== "delivered", `bob must not read it, got ${r.kind}`);
    }
    // And the server will not give him the new epoch's key.
    const keys = await cb.control.getKeys(room.id).catch(() => []);
    assert(keys.every((k) => k.epoch < 2), "no key for epoch 2 was sealed to bob");
  } finally {
    await b.stop();
  }
});

Deno.test("replayed, truncated, tampered and non-member packets are dropped and counted", async () => {
  const b = await clientBus();
  try {
    const alice = await addBusUser(b.store, "alice");
    const bob = await addBusUser(b.store, "bob");
    const carol = await addBusUser(b.store, "carol");
    const ca = await b.client(alice);
    const cb = await b.client(bob);
    const tap = await b.tap();
    const room = await ca.createRoom("guarded.room");
    await ca.addMember(room, bob.hex);
    await cb.refreshSession();
    const seen: string[] = [];
    const sub = await cb.subscribe(room, (_m, p) => seen.push(dec.decode(p)));
    const wire = tap.subscribe("guarded.room", { max: 1 });
    await tap.flush();
    await ca.publish(room, "original");
    let captured = new Uint8Array();
    // A copy: nats.js hands out views of a read buffer it reuses.
    for await (const m of wire) captured = new Uint8Array(m.data);

    tap.publish("guarded.room", captured); // replay
    tap.publish("guarded.room", captured.subarray(0, captured.length - 10)); // truncated
    const tampered = captured.slice();
    tampered[70] ^= 1;
    tap.publish("guarded.room", tampered); // tampered
    // A packet validly signed by Carol, who is allowlisted but not a member.
    const session = await ca.room(room.id);
    const forged = encodePacket(
      {
        roomId: room.id,
        epoch: session.state.epoch,
        session: new Uint8Array(16),
        signer: carol.identity.signer,
        encrypted: true,
        sentAt: Date.now(),
      },
      { index: 0, firstFrame: 0, key: new Uint8Array(32) },
      [new TextEncoder().encode("from carol")],
    );
    tap.publish("guarded.room", forged);
    await tap.flush();
    // All five packets accounted for (one delivered, four dropped), then exact counts.
    const { stats } = sub;
    await waitFor(
      () => stats.delivered + stats.replayed + stats.invalid + stats.nonMember + stats.noKey >= 5,
      { what: "bob's subscription to account for all five packets" },
    );
    await sub.drained();
    assertEquals(seen, ["original"]);
    assertEquals(sub.stats.replayed, 1);
    assertEquals(sub.stats.invalid, 2);
    assertEquals(sub.stats.nonMember, 1);
  } finally {
    await b.stop();
  }
});

Deno.test("a member the server inserts, or a key it swaps, is detected and not obeyed", async () => {
  const b = await clientBus();
  try {
    const alice = await addBusUser(b.store, "alice");
    const bob = await addBusUser(b.store, "bob");
    const mallory = await addBusUser(b.store, "mallory");
    const ca = await b.client(alice);
    const room = await ca.createRoom("trust.room");
    // The server (here: its database) lists Mallory without a signed change.
    await b.store.addMember({
      roomId: room.id,
      signPub: mallory.hex,
      role: "member",
      addedBy: alice.hex,
      change: null,
    });
    const fresh = await b.client(alice);
    await assertRejects(() => fresh.room(room.id), MembershipVerificationError, "does not prove");
    await b.store.removeMember(room.id, mallory.hex);

    // The directory hands out a key-exchange key for Bob that Bob never signed.
    const other = generateIdentity("other");
    await replaceKex(b.s.dataDir, bob.hex, other);
    await assertRejects(
      () => ca.addMember(room, bob.hex),
      MembershipVerificationError,
      "not signed",
    );
  } finally {
    await b.stop();
  }
});

/** Rewrites a user's key-exchange key behind the API, as a compromised server could. */
async function replaceKex(dataDir: string, signPub: string, other: Identity) {
  const { createClient } = await import("@libsql/client");
  const db = createClient({ url: `file:${dataDir}/unibus.db` });
  try {
    await db.execute({
      sql: "UPDATE users SET kex_pub = ?, kex_sig = ? WHERE sign_pub = ?",
      args: [other.kexPubHex, other.kexSigHex, signPub],
    });
  } finally {
    db.close();
  }
}

Deno.test("a room created with members is one signed change, one epoch and one key; a bulk add is one more", async () => {
  const b = await clientBus();
  try {
    const alice = await addBusUser(b.store, "alice");
    const bob = await addBusUser(b.store, "bob");
    const carol = await addBusUser(b.store, "carol");
    const ca = await b.client(alice);
    const room = await ca.createRoom("bulk.room", undefined, { members: [carol.hex, bob.hex] });
    assertEquals(room.epoch, 0);
    const session = await ca.room(room.id);
    assertEquals(session.keyEpochs, [0]);
    assertEquals(session.state.seq, 0);
    assertEquals(
      [...session.state.members.keys()].sort(),
      [alice.hex, bob.hex, carol.hex].sort(),
    );
    const cb = await b.client(bob);
    const cc = await b.client(carol);
    const got = collector(2);
    await cb.subscribe(room, (_m, p) => got.push(`bob:${dec.decode(p)}`));
    await cc.subscribe(room, (_m, p) => got.push(`carol:${dec.decode(p)}`));
    await ca.publish(room, "hi both");
    assertEquals((await got.wait()).sort(), ["bob:hi both", "carol:hi both"]);
    // Two more in one change: epoch 1, one key, both of them in it.
    const dave = await addBusUser(b.store, "dave");
    const erin = await addBusUser(b.store, "erin");
    const info = await ca.addMembers(room, [{ signPub: dave.hex, role: "admin" }, erin.hex]);
    assertEquals(info.epoch, 1);
    const after = await ca.room(room.id);
    assertEquals(after.state.seq, 1);
    assertEquals(after.state.members.get(dave.hex)?.role, "admin");
    assertEquals(after.state.members.get(erin.hex)?.role, "member");
    assertEquals(after.keyEpochs, [0, 1]);
    // Erin's client verifies the v2 log and opens epoch 1's key.
    const again = collector(1);
    const ce = await b.client(erin);
    await ce.subscribe(room, (_m, p) => again.push(`erin:${dec.decode(p)}`));
    await ca.publish(room, "welcome");
    assertEquals(await again.wait(), ["erin:welcome"]);
    // A single add stays the v1 change.
    const frank = await addBusUser(b.store, "frank");
    await ca.addMembers(room, [frank.hex]);
    const view = (await ca.room(room.id)).state;
    assertEquals(view.seq, 2);
  } finally {
    await b.stop();
  }
});

Deno.test("history read from a stream sequence in the middle delivers the rest, stepping each chain forward", async () => {
  const b = await clientBus();
  try {
    const alice = await addBusUser(b.store, "alice");
    const bob = await addBusUser(b.store, "bob");
    const ca = await b.client(alice);
    const room = await ca.createRoom("mid.room", { encrypt: true, sign: true, persist: true });
    await ca.addMember(room, bob.hex);
    // Awaited one by one: six packets of one session, packet indices 0..5.
    await sendAndStore(b, room, async () => {
      for (let i = 0; i < 6; i++) await ca.publish(room, `entry-${i}`);
      await ca.flush();
    });
    const cb = await b.client(bob);
    const all = await cb.history(room);
    assertEquals(all.messages.length, 6);
    const { jetstreamManager } = await import("@nats-io/jetstream");
    const jsm = await jetstreamManager(await b.roomsTap());
    const { state } = await jsm.streams.info(`ROOM_${room.id}`);
    const { messages, stats } = await cb.history(room, { startSeq: state.first_seq + 3 });
    assertEquals(messages.map((m) => dec.decode(m.plaintext)), ["entry-3", "entry-4", "entry-5"]);
    assertEquals([stats.invalid, stats.replayed], [0, 0]);
  } finally {
    await b.stop();
  }
});

eachStore("a persisted room's history is readable after reconnecting, decrypted", async (kind) => {
  const b = await clientBus(kind);
  try {
    const alice = await addBusUser(b.store, "alice");
    const bob = await addBusUser(b.store, "bob");
    const ca = await b.client(alice);
    const room = await ca.createRoom("log.room", { encrypt: true, sign: true, persist: true });
    await ca.addMember(room, bob.hex);
    await sendAndStore(b, room, async () => {
      for (let i = 0; i < 5; i++) ca.publish(room, `entry-${i}`);
      await ca.flush();
    });
    // Bob was offline; he connects now and reads what he missed.
    const cb = await b.client(bob);
    const { messages, stats } = await cb.history(room);
    assertEquals(
      messages.map((m) => dec.decode(m.plaintext)),
      [0, 1, 2, 3, 4].map((i) => `entry-${i}`),
    );
    assertEquals(stats.invalid, 0);
    // The stream holds ciphertext only.
    const { jetstream } = await import("@nats-io/jetstream");
    const js = jetstream(await b.roomsTap());
    const stream = await js.streams.get(`ROOM_${room.id}`);
    const first = await stream.getMessage({ seq: 1 });
    assert(first && !dec.decode(first.data).includes("entry-"), "ciphertext at rest");
  } finally {
    await b.stop();
  }
});

eachStore(
  "blobs round-trip encrypted for members, stay closed to others, and their uploader deletes them",
  async (kind) => {
    const b = await clientBus(kind);
    try {
      const alice = await addBusUser(b.store, "alice");
      const bob = await addBusUser(b.store, "bob");
      const carol = await addBusUser(b.store, "carol");
      const ca = await b.client(alice);
      const cb = await b.client(bob);
      const cc = await b.client(carol);
      const room = await ca.createRoom("files.room");
      await ca.addMember(room, bob.hex);
      const content = new TextEncoder().encode("a file only members read");
      const ref = await ca.putBlob(room, content);
      assertEquals(toHex(await cb.getBlob(room, ref)), toHex(content));
      await assertRejects(() => cc.control.getBlob(ref.id), ControlPlaneError);
      // Only the uploader or an admin deletes it; then it is gone for everyone.
      await assertRejects(() => cb.deleteBlob(ref), ControlPlaneError, "uploader");
      await ca.deleteBlob(ref);
      await assertRejects(() => cb.getBlob(room, ref), ControlPlaneError, "not found");
    } finally {
      await b.stop();
    }
  },
);

eachStore(
  "after a removal the remaining members move to the new epoch without being asked",
  async (kind) => {
    const b = await clientBus(kind);
    try {
      const alice = await addBusUser(b.store, "alice");
      const bob = await addBusUser(b.store, "bob");
      const carol = await addBusUser(b.store, "carol");
      const ca = await b.client(alice);
      const cc = await b.client(carol);
      const room = await ca.createRoom("rotating.room");
      await ca.addMember(room, carol.hex);
      await ca.addMember(room, bob.hex);
      await cc.refreshSession();
      const heard = collector(2);
      const epochs: number[] = [];
      await ca.subscribe(room, (m, p) => {
        if (m.sender === carol.hex) {
          epochs.push(m.epoch);
          heard.push(dec.decode(p));
        }
      });
      await cc.publish(room, "before");
      const info = await ca.removeMember(room, bob.hex);
      // Carol did nothing but get the server's notice and verify the new log.
      await waitFor(async () => (await cc.room(room.id)).state.epoch === info.epoch, {
        timeoutMs: 3000,
        what: `carol to reach epoch ${info.epoch} from the server's notice alone`,
      });
      await cc.publish(room, "after");
      assertEquals(await heard.wait(), ["before", "after"]);
      assertEquals(epochs, [info.epoch - 1, info.epoch]);
    } finally {
      await b.stop();
    }
  },
);

Deno.test("a member who joins later reads from its join on, and older epochs once an admin shares them", async () => {
  const b = await clientBus();
  try {
    const alice = await addBusUser(b.store, "alice");
    const bob = await addBusUser(b.store, "bob");
    const ca = await b.client(alice);
    const room = await ca.createRoom("archive.room", { encrypt: true, sign: true, persist: true });
    await sendAndStore(b, room, async () => {
      await ca.publish(room, "before bob");
      await ca.addMember(room, bob.hex);
      await ca.publish(room, "after bob");
      await ca.flush();
    });
    const cb = await b.client(bob);
    const first = await cb.history(room);
    assertEquals(first.messages.map((m) => dec.decode(m.plaintext)), ["after bob"]);
    assertEquals(first.stats.noKey, 1);
    assertEquals(await ca.shareHistory(room, bob.hex), [0]);
    const fresh = await b.client(bob);
    const all = await fresh.history(room);
    assertEquals(all.messages.map((m) => dec.decode(m.plaintext)), ["before bob", "after bob"]);
  } finally {
    await b.stop();
  }
});

Deno.test("request: nobody listening fails at once, no answer times out, close fails a waiting request", async () => {
  const b = await clientBus();
  try {
    const { bob, ca, cb, room } = await roomOfTwo(b, "agent.quiet.in");
    // No subscriber on the room's subject: the server says so (no responders).
    // (A timeout would be a TimeoutError, after 20 s.)
    const none = await assertRejects(
      () => ca.request(room, "anyone?", { timeoutMs: 20_000 }),
      Error,
    );
    assert(none instanceof RequestError && none.cause instanceof NoRespondersError, `${none}`);
    // Bob listens but never answers.
    const seen = collector(2);
    await cb.subscribe(room, (_meta, data) => seen.push(dec.decode(data)));
    const silent = await assertRejects(() => ca.request(room, "hello?", { timeoutMs: 300 }), Error);
    assert(silent instanceof TimeoutError, `${silent}`);
    // Bob answers the next one: the exchange after a timeout still works.
    const cb2 = await b.client(bob);
    await cb2.subscribe(room, (meta, data) => {
      if (meta.reply) cb2.respond(room, meta, `re: ${dec.decode(data)}`);
    });
    const r = await ca.request(room, "now?");
    assertEquals(dec.decode(r.plaintext), "re: now?");
    assertEquals(await seen.wait(), ["hello?", "now?"]);
    await cb2.close();
    // Closing the client fails what still waits for a reply.
    const waiting = ca.request(room, "last", { timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 50));
    await ca.close();
    await assertRejects(() => waiting, UnibusError, "closed");
  } finally {
    await b.stop();
  }
});

Deno.test("request/respond: the reply is sealed for the room and bound to its request", async () => {
  const b = await clientBus();
  try {
    const alice = await addBusUser(b.store, "alice");
    const bob = await addBusUser(b.store, "bob");
    const carol = await addBusUser(b.store, "carol");
    const dave = await addBusUser(b.store, "dave");
    const ca = await b.client(alice);
    const cb = await b.client(bob);
    const cd = await b.client(dave);
    const tap = await b.tap();
    const room = await ca.createRoom("agent.oracle.in");
    for (const u of [bob, carol, dave]) await ca.addMember(room, u.hex);
    await cb.refreshSession();
    await cd.refreshSession();
    const answering = await cb.subscribe(room, (meta, data) => {
      if (meta.reply) cb.respond(room, meta, `answer to ${dec.decode(data)}`);
    });
    const reply = await ca.request(room, "question 1");
    assertEquals(dec.decode(reply.plaintext), "answer to question 1");
    assertEquals(reply.meta.sender, bob.hex);

    // Capture Bob's sealed reply to Dave.
    const daveInbox = tap.subscribe(`_INBOX.${dave.hex}.>`, { max: 1 });
    await tap.flush();
    await cd.request(room, "dave's question");
    let captured = new Uint8Array();
    for await (const m of daveInbox) captured = new Uint8Array(m.data);
    answering.unsubscribe();

    // Carol, a member, answers Alice's next request with that genuine,
    // validly signed reply of Bob's to somebody else.
    const nc = await connectAs(b.s.natsPort, carol);
    nc.subscribe("agent.oracle.in", {
      callback: (_e, m) => {
        if (m.reply) nc.publish(m.reply, captured);
      },
    });
    await nc.flush();
    await assertRejects(
      () => ca.request(room, "question 2"),
      UnibusError,
      "does not answer this request",
    );
    await nc.close();
  } finally {
    await b.stop();
  }
});

Deno.test("two subscriptions of one client to one room each get every message, and a responder beside a listener answers", async () => {
  const b = await clientBus();
  try {
    const { ca, cb, room } = await roomOfTwo(b, "agent.twice.in");
    const first = collector(3);
    const second = collector(2);
    await cb.subscribe(room, (_meta, data) => first.push(dec.decode(data)));
    const two = await cb.subscribe(room, (_meta, data) => second.push(dec.decode(data)));
    // The same client answers requests from a third subscription.
    await cb.subscribe(room, (meta, data) => {
      if (meta.reply) cb.respond(room, meta, `re: ${dec.decode(data)}`);
    });
    await ca.publish(room, "one");
    const reply = await ca.request(room, "two");
    assertEquals(dec.decode(reply.plaintext), "re: two");
    assertEquals(await second.wait(), ["one", "two"]);
    // Unsubscribing one leaves the others listening.
    two.unsubscribe();
    await ca.publish(room, "three");
    assertEquals(await first.wait(), ["one", "two", "three"]);
    assertEquals(second.got, ["one", "two"]);
    assertEquals(two.stats.replayed, 0);
  } finally {
    await b.stop();
  }
});
