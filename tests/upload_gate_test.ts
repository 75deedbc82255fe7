/**
 * Upload places against a real `serve --bus-auth enforce` on loopback (the
 * security review after issue 8): before a body is read, a named key proves
 * nothing, so a stranger naming other users' keys must not be able to take
 * their places or the node's, and a body that trickles must not hold a place
 * for free.
 */

import { AUTH_HEADERS, signRequest } from "../lib/auth/request_signing.ts";
import { generateSeed, keyPairFromSeed } from "../lib/crypto/ed25519.ts";
import type { Identity } from "../lib/identity/identity.ts";
import { MIN_UPLOAD_RATE } from "../server/http/request_auth.ts";
import { sourceOf, UploadGate } from "../server/http/upload_gate.ts";
import { DEFAULT_LIMITS } from "../server/limits.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { addBusUser } from "./helpers/bus.ts";
import { type RawExchange, rawPost } from "./helpers/raw_http.ts";
import { as, type Bus, genesis, startBus, stopBus } from "./helpers/rooms_api.ts";
import { waitFor } from "./helpers/wait.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

Deno.test("sourceOf: IPv4 as is, IPv6 by its /64, mapped IPv4 as IPv4, unknown as one source", () => {
  assertEquals(sourceOf("127.0.0.2"), "127.0.0.2");
  assertEquals(sourceOf("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  assertEquals(sourceOf("2001:0db8:0001:0002::9"), "2001:db8:1:2::/64");
  assertEquals(sourceOf("2001:db8::1"), "2001:db8:0:0::/64");
  assertEquals(sourceOf("[2001:DB8:1:2::ffff]"), "2001:db8:1:2::/64");
  assertEquals(sourceOf("fe80::1%eth0"), "fe80:0:0:0::/64");
  assertEquals(sourceOf("::1"), "0:0:0:0::/64");
  assertEquals(sourceOf("::ffff:192.0.2.7"), "192.0.2.7");
  assertEquals(sourceOf(undefined), "unknown");
});

Deno.test("UploadGate: a key's places are per source; a source's places are bounded whatever keys it names", () => {
  const gate = new UploadGate({ perUser: 2, perSource: 3, total: 5 });
  const held = [gate.enter("victim", "a"), gate.enter("victim", "a")];
  assertThrows(() => gate.enter("victim", "a"), Error, "uploads_per_user: 2 of 2");
  // Another source naming the same key has places of its own.
  held.push(gate.enter("victim", "b"));
  held.push(gate.enter("other", "a"));
  assertThrows(() => gate.enter("third", "a"), Error, "uploads_per_source: 3 of 3");
  held.push(gate.enter("third", "c"));
  assertThrows(() => gate.enter("fourth", "d"), Error, "uploads: 5 of 5");
  assertEquals(gate.inFlight, 5);
  held.forEach((release) => release());
  held[0]();
  assertEquals(gate.inFlight, 0);
  gate.enter("victim", "a")();
});

/** A signed blob upload of `body` by `who` to `roomId`, sent whole from `localAddress`. */
async function uploadFrom(
  bus: Bus,
  who: Identity,
  roomId: string,
  body: Uint8Array,
  localAddress: string,
) {
  const path = `/v1/rooms/${roomId}/blobs`;
  const x = await rawPost(
    bus.s.httpPort,
    path,
    {
      ...signRequest(who.signer, { method: "POST", pathAndQuery: path, body }),
      "content-type": "application/octet-stream",
      "content-length": String(body.byteLength),
    },
    body,
    { localAddress },
  );
  return await x.response(15_000);
}

async function roomOf(bus: Bus, who: Identity, subject: string): Promise<string> {
  const res = await as(bus, who).post<{ id: string }>("/v1/rooms", {
    change: genesis(who, { subject }),
  });
  assertEquals(res.status, 201, JSON.stringify(res.body));
  return res.body.id;
}

Deno.test("one source naming other users' keys cannot take the victim's or the node's upload places", async () => {
  const bus = await startBus();
  const held: RawExchange[] = [];
  let pump: ReturnType<typeof setInterval> | undefined;
  try {
    const victim = (await addBusUser(bus.store, "victim")).identity;
    const others = await Promise.all(
      Array.from({ length: 7 }, async (_, i) => (await addBusUser(bus.store, `u${i}`)).identity),
    );
    const roomId = await roomOf(bus, victim, "uploads.victim");
    // Registered keys are public; the attacker signs with its own key and
    // names theirs, twice each: 8 keys × 2 was every place of the node
    // (16), and the first two were all of the victim's.
    const attacker = keyPairFromSeed(generateSeed());
    const path = `/v1/rooms/${roomId}/blobs`;
    const declared = 8 * MiB;
    for (const named of [victim, ...others]) {
      for (let i = 0; i < 2; i++) {
        const first = new Uint8Array(32 * KiB);
        const headers = signRequest(attacker, { method: "POST", pathAndQuery: path, body: first });
        held.push(
          await rawPost(bus.s.httpPort, path, {
            ...headers,
            [AUTH_HEADERS.key]: named.signPubHex,
            "content-type": "application/octet-stream",
            "content-length": String(declared),
          }, first),
        );
      }
    }
    // The admitted ones are kept well above the minimum rate, so only the
    // bounds decide who holds a place (8 MiB at this pace takes ~50 s).
    const chunk = new Uint8Array(16 * KiB);
    pump = setInterval(() => {
      for (const x of held) if (!x.peek()) void x.send(chunk);
    }, 100);
    const DEFAULT_PER_SOURCE = DEFAULT_LIMITS.uploadsPerSource;
    const refused = await waitFor(() => {
      const bySource = held.filter((x) => x.peek()?.body.limit === "uploads_per_source");
      return bySource.length === held.length - DEFAULT_PER_SOURCE && bySource;
    }, { timeoutMs: 15_000, what: `all but ${DEFAULT_PER_SOURCE} refused as uploads_per_source` });
    assertEquals(refused[0].peek(), {
      status: 429,
      body: {
        error: "too_many_uploads",
        message:
          `too many large uploads at once (uploads_per_source: ${DEFAULT_PER_SOURCE} of ${DEFAULT_PER_SOURCE}); retry shortly`,
        limit: "uploads_per_source",
        max: DEFAULT_PER_SOURCE,
        used: DEFAULT_PER_SOURCE,
      },
    });
    const stillHeld = held.filter((x) => !x.peek());
    assertEquals(stillHeld.length, DEFAULT_PER_SOURCE);

    // The victim, from its own address, uploads while the attacker holds
    // two places in its name and all it may.
    const blob = new Uint8Array(200 * KiB).fill(1);
    const mine = await uploadFrom(bus, victim, roomId, blob, "127.0.0.2");
    assertEquals([mine.status, mine.body.size], [201, blob.byteLength], JSON.stringify(mine.body));
    // And so can another user from a third address: the node is not full.
    const otherRoom = await roomOf(bus, others[0], "uploads.other");
    const theirs = await uploadFrom(bus, others[0], otherRoom, blob, "127.0.0.3");
    assertEquals(theirs.status, 201, JSON.stringify(theirs.body));
    // The attacker's held uploads were never cut for being slow.
    assertEquals(held.filter((x) => !x.peek()).length, DEFAULT_PER_SOURCE);
  } finally {
    clearInterval(pump);
    held.forEach((x) => x.close());
    await stopBus(bus);
  }
});

Deno.test("a large body that trickles is cut with 408 body_too_slow after the grace; a steady one passes", async () => {
  const bus = await startBus();
  try {
    const alice = (await addBusUser(bus.store, "alice")).identity;
    const roomId = await roomOf(bus, alice, "uploads.slow");
    const path = `/v1/rooms/${roomId}/blobs`;
    const body = new Uint8Array(1 * MiB).fill(2);
    const headers = {
      ...signRequest(alice.signer, { method: "POST", pathAndQuery: path, body }),
      "content-type": "application/octet-stream",
      "content-length": String(body.byteLength),
    };
    const t0 = Date.now();
    const slow = await rawPost(bus.s.httpPort, path, headers, body.subarray(0, 10 * KiB));
    // Without a rate, this place was held until the signature went stale (30 s).
    const res = await slow.response(12_000);
    const took = Date.now() - t0;
    assertEquals([res.status, res.body.error], [408, "body_too_slow"]);
    // 10 KiB buys 10/64 s past the 2 s grace.
    assert(took >= MIN_UPLOAD_RATE.graceMs, `cut after ${took} ms, inside the grace`);

    // An honest upload at ~100 KiB/s, past the grace, is accepted: the
    // place was given back and the rate is not a wall for a steady sender.
    const steadyBody = new Uint8Array(320 * KiB).fill(3);
    const steady = await rawPost(bus.s.httpPort, path, {
      ...signRequest(alice.signer, { method: "POST", pathAndQuery: path, body: steadyBody }),
      "content-type": "application/octet-stream",
      "content-length": String(steadyBody.byteLength),
    });
    for (let off = 0; off < steadyBody.byteLength; off += 10 * KiB) {
      await steady.send(steadyBody.subarray(off, off + 10 * KiB));
      await new Promise((r) => setTimeout(r, 100));
    }
    const ok = await steady.response(10_000);
    assertEquals([ok.status, ok.body.size], [201, steadyBody.byteLength], JSON.stringify(ok.body));
  } finally {
    await stopBus(bus);
  }
});
