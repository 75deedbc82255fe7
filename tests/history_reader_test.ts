/**
 * history_reader.ts on its own: the bounded reorder window (its order and
 * bounds over undecodable bytes, each its own "session"; what it does for a
 * resent packet over real sealed packets and a real reader), and directGets'
 * failures against a real serve.
 */

import { directGets, inSessionOrder, type StoredPacket } from "../lib/client/history_reader.ts";
import { inboxPrefixFor } from "../lib/auth/acl.ts";
import { packetLane } from "../lib/e2e/packet.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { addBusUser, connectAs } from "./helpers/bus.ts";
import { clientBus } from "./helpers/client_bus.ts";

Deno.test("inSessionOrder gives results back in stream order and holds at most its window", async () => {
  let inWindow = 0;
  let most = 0;
  async function* packets(): AsyncGenerator<StoredPacket> {
    for (let seq = 1; seq <= 50; seq++) {
      most = Math.max(most, ++inWindow);
      yield { seq, data: new Uint8Array(10) };
    }
  }
  const got: number[] = [];
  for await (
    const [seq, r] of inSessionOrder(packets(), (d) => d.length, () => false, { entries: 4 })
  ) {
    inWindow--;
    got.push(seq);
    assertEquals(r, 10);
  }
  assertEquals(got, Array.from({ length: 50 }, (_, i) => i + 1));
  assert(most <= 5, `held ${most} packets with a window of 4`);
  // The byte bound: 25 bytes hold two 10-byte packets.
  inWindow = most = 0;
  for await (const _ of inSessionOrder(packets(), () => 0, () => false, { bytes: 25 })) {
    inWindow--;
  }
  assert(most <= 3, `held ${most} packets with a window of 25 bytes`);
});

Deno.test("a resent packet within the reorder window is read before later ones of its session; beyond it, it is a replay", async () => {
  const b = await clientBus();
  try {
    const alice = await addBusUser(b.store, "alice");
    const bob = await addBusUser(b.store, "bob");
    const ca = await b.client(alice);
    const room = await ca.createRoom("window.room", { encrypt: true, sign: true, persist: true });
    await ca.addMember(room, bob.hex);
    const cb = await b.client(bob);
    const sender = await ca.room(room);
    const [p0, p1, p2, p3] = ["m0", "m1", "m2", "m3"].map((t) =>
      sender.seal([new TextEncoder().encode(t)])
    );
    // The unverified header fields the order comes from.
    const lanes = [p0, p1, p2, p3].map((p) => packetLane(p)!);
    assertEquals(lanes.map((l) => l.index), [0, 1, 2, 3]);
    assertEquals(new Set(lanes.map((l) => l.lane)).size, 1);
    assertEquals(packetLane(new Uint8Array(200)), null);
    // Index 0 stored three entries late.
    const stored: StoredPacket[] = [p1, p2, p3, p0].map((data, i) => ({ seq: i + 1, data }));
    const packets = async function* () {
      yield* stored;
    };
    const read = async (entries: number) => {
      const reader = (await cb.room(room)).forHistory();
      const out: string[] = [];
      for await (
        const [, r] of inSessionOrder(
          packets(),
          (d) => reader.receive(d),
          (r) => r.kind === "delivered",
          { entries },
        )
      ) {
        if (r.kind === "delivered") {
          out.push(...r.frames.map((f) => new TextDecoder().decode(f.plaintext)));
        }
      }
      return { out, stats: reader.stats };
    };
    // In order, each packet is given as soon as it is read: the source
    // holds back p3 until the first three results are out.
    const reader = (await cb.room(room)).forHistory();
    const gate = Promise.withResolvers<void>();
    const held = async function* () {
      yield { seq: 1, data: p0 };
      yield { seq: 2, data: p1 };
      yield { seq: 3, data: p2 };
      await gate.promise;
      yield { seq: 4, data: p3 };
    };
    const inOrder = inSessionOrder(
      held(),
      (d) => reader.receive(d),
      (r) => r.kind === "delivered",
    );
    const seen: number[] = [];
    const timer = setTimeout(() => gate.reject(new Error("results waited for the window")), 5000);
    try {
      for await (const [seq] of inOrder) {
        seen.push(seq);
        if (seen.length === 3) gate.resolve();
      }
    } finally {
      clearTimeout(timer);
    }
    assertEquals(seen, [1, 2, 3, 4]);
    const wide = await read(4);
    assertEquals(wide.out, ["m1", "m2", "m3", "m0"]);
    assertEquals(wide.stats.replayed, 0);
    const narrow = await read(2);
    assertEquals(narrow.out, ["m1", "m2", "m3"]);
    assertEquals(narrow.stats.replayed, 1);
  } finally {
    await b.stop();
  }
});

Deno.test("directGets throws a stream's error status at once, and no answer at its deadline", async () => {
  const b = await clientBus();
  try {
    const alice = await addBusUser(b.store, "alice");
    const nc = await b.client(alice);
    const room = await nc.createRoom("alone.room", { encrypt: true, sign: true, persist: true });
    // A request the stream refuses (sequence 0 names no message) is answered
    // with an error status, thrown as it comes.
    const refused = directGets(await b.roomsTap(), {
      stream: `ROOM_${room.id}`,
      from: 0,
      to: 0,
      inboxPrefix: "_INBOX",
    });
    await assertRejects(
      async () => {
        for await (const _ of refused) { /* refused */ }
      },
      Error,
      "408",
    );
    // A user whose ACL does not allow the get: the server drops the request,
    // and the reader gives up at its deadline rather than waiting forever.
    const stranger = await addBusUser(b.store, "mallory");
    const conn = await connectAs(b.s.natsPort, stranger);
    try {
      const denied = directGets(conn, {
        stream: `ROOM_${room.id}`,
        from: 1,
        to: 3,
        inboxPrefix: inboxPrefixFor(stranger.hex),
        timeoutMs: 300,
      });
      await assertRejects(
        async () => {
          for await (const _ of denied) { /* denied */ }
        },
        Error,
        "no answer",
      );
    } finally {
      await conn.close();
    }
  } finally {
    await b.stop();
  }
});
