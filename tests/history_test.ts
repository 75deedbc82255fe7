/**
 * Reading a persisted room's history against a real serve: many direct gets
 * in flight, given back in stream order; limits, start sequences and the end
 * of the stream; a deleted sequence; a resent packet stored after later ones.
 */

import { jetstreamManager } from "@nats-io/jetstream";
import { wireSubject } from "../lib/auth/acl.ts";
import type { UnibusClient } from "../lib/client/client.ts";
import { assertEquals, assertRejects } from "./helpers/assert.ts";
import { addBusUser } from "./helpers/bus.ts";
import { type ClientBus, clientBus } from "./helpers/client_bus.ts";
import { waitFor } from "./helpers/wait.ts";

const dec = new TextDecoder();
const texts = (ms: Array<{ plaintext: Uint8Array }>) => ms.map((m) => dec.decode(m.plaintext));

/** Waits until the room's stream holds `n` entries; returns its state. */
async function storedEntries(b: ClientBus, roomId: string, n: number) {
  const jsm = await jetstreamManager(await b.roomsTap());
  return await waitFor(async () => {
    const { state } = await jsm.streams.info(`ROOM_${roomId}`);
    return state.messages === n && state;
  }, { what: `room ${roomId}'s stream to hold ${n} entries`, timeoutMs: 20_000 });
}

async function persistedRoom(b: ClientBus, subject: string) {
  const alice = await addBusUser(b.store, "alice");
  const bob = await addBusUser(b.store, "bob");
  const ca = await b.client(alice);
  const room = await ca.createRoom(subject, { encrypt: true, sign: true, persist: true });
  await ca.addMember(room, bob.hex);
  return { ca, room, reader: (): Promise<UnibusClient> => b.client(bob) };
}

Deno.test("history reads a stream longer than the gets in flight in stream order, batched packets too, with limits and start sequences", async () => {
  const b = await clientBus();
  try {
    const { ca, room, reader } = await persistedRoom(b, "long.room");
    // 700 packets of one message (awaited one by one), then 3 packets of 100
    // (published in one tick): 1000 messages in 703 entries, more than the
    // 256 direct gets history keeps in flight.
    const expected: string[] = [];
    for (let i = 0; i < 700; i++) {
      expected.push(`one-${i}`);
      await ca.publish(room, `one-${i}`);
    }
    for (let p = 0; p < 3; p++) {
      const batch = Array.from({ length: 100 }, (_, i) => `batch-${p}-${i}`);
      expected.push(...batch);
      await Promise.all(batch.map((t) => ca.publish(room, t)));
    }
    await ca.flush();
    const state = await storedEntries(b, room.id, 703);
    const cb = await reader();

    const all = await cb.history(room);
    assertEquals(texts(all.messages), expected);
    assertEquals(all.stats.delivered, 1000);
    assertEquals([all.stats.invalid, all.stats.replayed, all.stats.noKey], [0, 0, 0]);

    // The stream form gives the same messages.
    const streamed = await cb.readHistory(room);
    const got: string[] = [];
    for await (const m of streamed.messages) got.push(dec.decode(m.plaintext));
    assertEquals(got, expected);

    // A limit stops the read: the first messages, then nothing more.
    assertEquals(texts((await cb.history(room, { limit: 5 })).messages), expected.slice(0, 5));
    assertEquals(texts((await cb.history(room, { limit: 750 })).messages), expected.slice(0, 750));
    assertEquals((await cb.history(room, { limit: 0 })).messages, []);
    // Stopping a stream early is fine too.
    const early = await cb.readHistory(room);
    let n = 0;
    for await (const _ of early.messages) if (++n === 3) break;
    assertEquals(n, 3);

    // From the middle: the rest, each session's chain stepped forward.
    const mid = await cb.history(room, { startSeq: state.first_seq + 350 });
    assertEquals(texts(mid.messages), expected.slice(350));
    assertEquals([mid.stats.invalid, mid.stats.replayed], [0, 0]);
    // The end of the stream: its last entry (one batched packet), then nothing.
    const last = await cb.history(room, { startSeq: state.last_seq });
    assertEquals(texts(last.messages), expected.slice(900));
    assertEquals((await cb.history(room, { startSeq: state.last_seq + 1 })).messages, []);
    // Older than the stream's first sequence: from the first.
    assertEquals((await cb.history(room, { startSeq: 0 })).messages.length, 1000);

    // The newest messages only, fewer or more than there are.
    assertEquals(texts((await cb.history(room, { last: 3 })).messages), expected.slice(-3));
    assertEquals(texts((await cb.history(room, { last: 999 })).messages), expected.slice(1));
    assertEquals(texts((await cb.history(room, { last: 5000 })).messages), expected);
    assertEquals((await cb.history(room, { last: 0 })).messages, []);
    assertEquals(
      texts((await cb.history(room, { limit: 10, last: 4 })).messages),
      expected.slice(6, 10),
    );

    await assertRejects(() => cb.history(room, { last: -1 }), RangeError, "last");
    await assertRejects(() => cb.history(room, { limit: -1 }), RangeError, "limit");
    await assertRejects(() => cb.history(room, { limit: 2.5 }), RangeError, "limit");
    await assertRejects(() => cb.history(room, { startSeq: 1.5 }), RangeError, "startSeq");
  } finally {
    await b.stop();
  }
});

Deno.test("history skips a deleted sequence in the middle and steps the sender's chain over it", async () => {
  const b = await clientBus();
  try {
    const { ca, room, reader } = await persistedRoom(b, "gap.room");
    for (let i = 0; i < 20; i++) await ca.publish(room, `entry-${i}`);
    await ca.flush();
    const state = await storedEntries(b, room.id, 20);
    const jsm = await jetstreamManager(await b.roomsTap());
    // The operator removes entry 9 (members cannot: their ACL has no delete).
    assertEquals(await jsm.streams.deleteMessage(`ROOM_${room.id}`, state.first_seq + 9), true);
    await storedEntries(b, room.id, 19);
    const cb = await reader();
    const { messages, stats } = await cb.history(room);
    assertEquals(
      texts(messages),
      Array.from({ length: 20 }, (_, i) => `entry-${i}`).filter((t) => t !== "entry-9"),
    );
    assertEquals([stats.delivered, stats.invalid, stats.replayed], [19, 0, 0]);
    // From the deleted sequence on: the next entries.
    const from = await cb.history(room, { startSeq: state.first_seq + 9 });
    assertEquals(texts(from.messages), Array.from({ length: 10 }, (_, i) => `entry-${i + 10}`));
  } finally {
    await b.stop();
  }
});

Deno.test("a packet stored after later ones of its session (a resend) is still read, given back in stream order; a second copy is a replay", async () => {
  const b = await clientBus();
  try {
    const { ca, room, reader } = await persistedRoom(b, "resend.room");
    const session = await ca.room(room);
    const packets = ["m0", "m1", "m2"].map((t) => session.seal([new TextEncoder().encode(t)]));
    // Stored as a stream between leaders would: index 0 after 1 and 2, then
    // once more (a duplicate outside the stream's window).
    const tap = await b.tap();
    for (const p of [packets[1], packets[2], packets[0], packets[0]]) {
      tap.publish(wireSubject(room), p);
    }
    await tap.flush();
    await storedEntries(b, room.id, 4);
    const cb = await reader();
    const { messages, stats } = await cb.history(room);
    assertEquals(texts(messages), ["m1", "m2", "m0"]);
    assertEquals([stats.delivered, stats.replayed, stats.invalid], [3, 1, 0]);
  } finally {
    await b.stop();
  }
});
