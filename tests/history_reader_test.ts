/**
 * The pieces of history reading that do not need a server: the bounded
 * window of gets in flight and the bounded reorder window. The get here is a
 * plain function over an in-memory array (history_test.ts reads a real
 * stream); the reorder window runs over undecodable bytes, each its own
 * "session", so it is checked for order and bounds only.
 */

import {
  HISTORY_GETS_IN_FLIGHT,
  inSessionOrder,
  readStream,
  type StoredPacket,
} from "../lib/client/history_reader.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";

function store(n: number, missing: Set<number> = new Set()) {
  let inFlight = 0;
  let most = 0;
  const asked: number[] = [];
  const get = async (seq: number) => {
    asked.push(seq);
    most = Math.max(most, ++inFlight);
    // Later sequences answer sooner: the order must come from the reader.
    await new Promise((r) => setTimeout(r, (seq * 7) % 5));
    inFlight--;
    if (seq === 13 && missing.has(-13)) throw new Error("get 13 failed");
    return seq > n || missing.has(seq) ? null : new Uint8Array([seq & 0xff]);
  };
  return { get, most: () => most, asked };
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

Deno.test("readStream yields every stored sequence in order, skips missing ones, keeps at most its window in flight", async () => {
  const s = store(1000, new Set([5, 6, 700]));
  const got = await collect(readStream(s.get, 3, 1000, 32));
  const want = Array.from({ length: 998 }, (_, i) => i + 3).filter((q) => ![5, 6, 700].includes(q));
  assertEquals(got.map((p) => p.seq), want);
  assertEquals(got[0].data, new Uint8Array([3]));
  assert(s.most() <= 32 && s.most() > 1, `in flight at most 32 and more than 1, was ${s.most()}`);
  assertEquals(HISTORY_GETS_IN_FLIGHT, 256);
  // An empty range asks nothing.
  const none = store(10);
  assertEquals(await collect(readStream(none.get, 11, 10)), []);
  assertEquals(none.asked, []);
});

Deno.test("readStream throws the first failed get in order, and stopping early leaves nothing unhandled", async () => {
  const failing = store(100, new Set([-13]));
  const seen: number[] = [];
  await assertRejects(
    async () => {
      for await (const p of readStream(failing.get, 1, 100, 8)) seen.push(p.seq);
    },
    Error,
    "get 13 failed",
  );
  assertEquals(seen, Array.from({ length: 12 }, (_, i) => i + 1));
  const s = store(100);
  let n = 0;
  for await (const _ of readStream(s.get, 1, 100, 16)) if (++n === 2) break;
  assert(s.asked.length <= 2 + 16, `asked ${s.asked.length} after stopping at 2`);
  // Let the abandoned gets settle inside this test.
  await new Promise((r) => setTimeout(r, 20));
});

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
    const [seq, r] of inSessionOrder("00".repeat(16), packets(), (d) => d.length, { entries: 4 })
  ) {
    inWindow--;
    got.push(seq);
    assertEquals(r, 10);
  }
  assertEquals(got, Array.from({ length: 50 }, (_, i) => i + 1));
  assert(most <= 5, `held ${most} packets with a window of 4`);
  // The byte bound: 25 bytes hold two 10-byte packets.
  inWindow = most = 0;
  for await (const _ of inSessionOrder("00".repeat(16), packets(), () => 0, { bytes: 25 })) {
    inWindow--;
  }
  assert(most <= 3, `held ${most} packets with a window of 25 bytes`);
});
