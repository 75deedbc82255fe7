/**
 * Unit tests of the E2E primitives: the sender ratchet, the frame AEAD, sealed
 * boxes and the packet format. Attacks are tested as an attacker would mount
 * them: through the public API and the wire bytes only.
 */

import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { generateSeed, keyPairFromSeed } from "../lib/crypto/ed25519.ts";
import { generateIdentity } from "../lib/identity/identity.ts";
import { concatBytes, lengthPrefixed, toHex, u16, u32, utf8 } from "../lib/e2e/bytes.ts";
import { aeadDecrypt, aeadEncrypt } from "../lib/e2e/aead.ts";
import { openBox, SEAL_OVERHEAD, sealBox } from "../lib/e2e/sealed_box.ts";
import { Chain, initialChainKey, MAX_SKIP, RatchetPassedError } from "../lib/e2e/ratchet.ts";
import {
  decodePacket,
  encodePacket,
  frameAad,
  MAX_FRAMES,
  type PacketContext,
  PacketError,
} from "../lib/e2e/packet.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";

const rand = (n: number) => crypto.getRandomValues(new Uint8Array(n));
const hmac1 = (ck: Uint8Array, b: number) => hmac(sha256, ck, Uint8Array.of(b));

/** assertThrows with a label saying which of many cases failed. */
function throwsAt<E extends Error>(
  label: string,
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  cls: new (...args: any[]) => E,
): E {
  try {
    return assertThrows(fn, cls);
  } catch (err) {
    throw new Error(`${label}: ${(err as Error).message}`);
  }
}

// ---- ratchet ----

Deno.test("ratchet: a chain advanced past index i refuses MK_i with RatchetPassedError", () => {
  const chain = new Chain(rand(32));
  chain.next(); // 0
  chain.next(); // 1
  chain.keyFor(5); // skips 2..4
  assertEquals(chain.index, 6);
  for (const i of [0, 1, 2, 3, 4, 5]) {
    throwsAt(`MK_${i} after passing it`, () => chain.keyFor(i), RatchetPassedError);
  }
  // Refusing does not move the chain: the next key is still MK_6.
  assertEquals(chain.index, 6);
});

Deno.test("ratchet: a replayed index is refused even when it is the last one handed out", () => {
  const chain = new Chain(rand(32));
  chain.keyFor(3);
  assertThrows(() => chain.keyFor(3), RatchetPassedError);
});

Deno.test("ratchet: the state at n is a new key, and a chain built from it cannot reach below n", () => {
  const ck0 = rand(32);
  // CK_i by the spec (CK_{i+1} = HMAC(CK_i, 0x02)), computed outside the class.
  const cks = [ck0];
  for (let i = 0; i < 8; i++) cks.push(hmac1(cks[i], 2));
  const mks = cks.map((ck) => hmac1(ck, 1));
  // Every state differs from every earlier one and from every message key.
  const seen = new Set<string>();
  for (const k of [...cks, ...mks]) seen.add(toHex(k));
  assertEquals(seen.size, cks.length + mks.length);

  const original = new Chain(ck0);
  for (let i = 0; i < 5; i++) assertEquals(toHex(original.next()), toHex(mks[i]));

  // What leaks when the state at n = 5 leaks: a chain from CK_5 gives MK_5
  // onwards, the same as the original, and nothing before.
  const leaked = new Chain(cks[5], 5);
  for (let i = 0; i < 5; i++) assertThrows(() => leaked.keyFor(i), RatchetPassedError);
  const forward = [leaked.next(), leaked.next(), leaked.next()].map(toHex);
  assertEquals(forward, [mks[5], mks[6], mks[7]].map(toHex));
  assertEquals(toHex(original.next()), toHex(mks[5]));
  for (let i = 0; i < 5; i++) assert(!forward.includes(toHex(mks[i])));
});

Deno.test("ratchet: the chain keeps its own copy of the chain key", () => {
  const ck0 = rand(32);
  const keep = ck0.slice();
  const chain = new Chain(ck0);
  ck0.fill(0); // a caller wiping its buffer must not change the chain
  assertEquals(toHex(chain.next()), toHex(hmac1(keep, 1)));
  const again = keep.slice();
  new Chain(again).next();
  assertEquals(toHex(again), toHex(keep), "nor does the chain wipe the caller's buffer");
});

Deno.test("ratchet: skipping more than MAX_SKIP ahead is refused without moving the chain", () => {
  const chain = new Chain(rand(32));
  assertThrows(() => chain.keyFor(MAX_SKIP + 1), RangeError);
  assertEquals(chain.index, 0);
});

Deno.test("ratchet: CK_0 differs for every room, epoch, sender and session", () => {
  const roomKey = rand(32);
  const base = { roomId: "a".repeat(32), epoch: 1, sender: rand(32), session: rand(16) };
  const variants = [
    base,
    { ...base, roomId: "b".repeat(32) },
    { ...base, epoch: 2 },
    { ...base, sender: rand(32) },
    { ...base, session: rand(16) },
  ];
  const keys = new Set(variants.map((v) => toHex(initialChainKey(roomKey, v))));
  assertEquals(keys.size, variants.length);
  assert(toHex(initialChainKey(rand(32), base)) !== toHex(initialChainKey(roomKey, base)));
});

// ---- AEAD ----

Deno.test("aead: round trips, and any change to key, nonce, ciphertext, tag or aad fails", () => {
  const key = rand(32), nonce = rand(12), aad = rand(20), pt = utf8("attack at dawn");
  const ct = aeadEncrypt(key, nonce, pt, aad);
  assertEquals(ct.length, pt.length + 16);
  assertEquals(new TextDecoder().decode(aeadDecrypt(key, nonce, ct, aad)!), "attack at dawn");
  const flip = (b: Uint8Array, i: number) => {
    const c = b.slice();
    c[i] ^= 1;
    return c;
  };
  assertEquals(aeadDecrypt(flip(key, 0), nonce, ct, aad), null);
  assertEquals(aeadDecrypt(key, flip(nonce, 11), ct, aad), null);
  for (let i = 0; i < ct.length; i++) assertEquals(aeadDecrypt(key, nonce, flip(ct, i), aad), null);
  assertEquals(aeadDecrypt(key, nonce, ct, flip(aad, 3)), null);
  assertEquals(aeadDecrypt(key, nonce, ct.subarray(0, 15), aad), null);
  assertEquals(aeadDecrypt(key, nonce, ct.subarray(0, ct.length - 1), aad), null);
});

// ---- sealed box ----

Deno.test("sealed box: only the recipient opens it, and any altered byte makes it unopenable", () => {
  const r = generateIdentity();
  const other = generateIdentity();
  const box = sealBox(utf8("room key"), r.kexPub);
  assertEquals(box.length, 8 + SEAL_OVERHEAD);
  assertEquals(new TextDecoder().decode(openBox(box, r.kexPub, r.kexPriv)!), "room key");
  assertEquals(openBox(box, other.kexPub, other.kexPriv), null);
  for (let i = 0; i < box.length; i++) {
    const c = box.slice();
    c[i] ^= 0x80;
    assertEquals(openBox(c, r.kexPub, r.kexPriv), null, `byte ${i}`);
  }
  assertEquals(openBox(box.subarray(0, SEAL_OVERHEAD - 1), r.kexPub, r.kexPriv), null);
});

Deno.test("sealed box: a fresh ephemeral key per box unless one is given, which is left intact", () => {
  const r = generateIdentity();
  const m = utf8("same");
  assert(toHex(sealBox(m, r.kexPub)) !== toHex(sealBox(m, r.kexPub)));
  const esk = rand(32);
  const copy = esk.slice();
  assertEquals(toHex(sealBox(m, r.kexPub, esk)), toHex(sealBox(m, r.kexPub, esk)));
  assertEquals(toHex(esk), toHex(copy));
  assertThrows(() => sealBox(m, r.kexPub, rand(31)), RangeError);
});

// ---- packets ----

function setup(encrypted = true) {
  const signer = keyPairFromSeed(generateSeed());
  const ctx: PacketContext = {
    roomId: toHex(rand(16)),
    epoch: 4,
    session: rand(16),
    signer,
    encrypted,
  };
  const roomKey = rand(32);
  const chain = new Chain(
    initialChainKey(roomKey, { ...ctx, sender: signer.publicKey }),
  );
  return { ctx, roomKey, chain };
}

function twoFramePacket() {
  const s = setup();
  const frames = [
    { index: 0, key: s.chain.keyFor(0), plaintext: utf8("one") },
    { index: 1, key: s.chain.keyFor(1), plaintext: utf8("two, a little longer") },
  ];
  return { ...s, bytes: encodePacket(s.ctx, frames) };
}

/** Re-signs arbitrary unsigned bytes as `signer` would: what a crafted packet looks like. */
function resign(unsigned: Uint8Array, roomId: string, ctx: PacketContext): Uint8Array {
  const sig = ctx.signer.sign(
    concatBytes(utf8("unibus/packet/v1"), lengthPrefixed(roomId), unsigned),
  );
  return concatBytes(unsigned, sig);
}

/** A header for hand-built packets. */
function header(ctx: PacketContext, count: number, flags = ctx.encrypted ? 1 : 0, reserved = 0) {
  return concatBytes(
    utf8("UBP1"),
    Uint8Array.of(flags, reserved),
    u16(count),
    ctx.signer.publicKey,
    u32(ctx.epoch),
    ctx.session,
  );
}

function frame(
  index: number,
  body: Uint8Array,
  nonce: Uint8Array = new Uint8Array(12),
  len = body.length,
) {
  return concatBytes(u32(index), nonce, u32(len), body);
}

Deno.test("packet: a valid packet decodes to what was sent and its frames decrypt in order", () => {
  const { ctx, roomKey, bytes } = twoFramePacket();
  const p = decodePacket(ctx.roomId, bytes);
  assertEquals([p.encrypted, p.epoch, p.frames.length], [true, 4, 2]);
  assertEquals(toHex(p.sender), toHex(ctx.signer.publicKey));
  assertEquals(toHex(p.session), toHex(ctx.session));
  const rx = new Chain(initialChainKey(roomKey, { ...ctx, sender: p.sender }));
  const texts = p.frames.map((f) =>
    new TextDecoder().decode(
      aeadDecrypt(
        rx.keyFor(f.index),
        f.nonce,
        f.body,
        frameAad(ctx.roomId, p.epoch, p.sender, p.session, f.index),
      )!,
    )
  );
  assertEquals(texts, ["one", "two, a little longer"]);
  // Delivered again, the same frames are replays: the receiver's chain refuses them.
  for (const f of decodePacket(ctx.roomId, bytes).frames) {
    assertThrows(() => rx.keyFor(f.index), RatchetPassedError);
  }
});

Deno.test("packet: encrypted frames get distinct random nonces by default", () => {
  const { bytes, ctx } = twoFramePacket();
  const [a, b] = decodePacket(ctx.roomId, bytes).frames;
  assert(toHex(a.nonce) !== toHex(b.nonce));
  assert(toHex(a.nonce) !== "00".repeat(12));
});

Deno.test("packet: a flipped bit anywhere (header, frame, signature) is a PacketError", () => {
  const { ctx, bytes } = twoFramePacket();
  for (let i = 0; i < bytes.length; i++) {
    for (const bit of [0x01, 0x80]) {
      const c = bytes.slice();
      c[i] ^= bit;
      throwsAt(`byte ${i} bit ${bit}`, () => decodePacket(ctx.roomId, c), PacketError);
    }
  }
});

Deno.test("packet: truncation at every length and trailing bytes are PacketErrors", () => {
  const { ctx, bytes } = twoFramePacket();
  for (let n = 0; n < bytes.length; n++) {
    throwsAt(`length ${n}`, () => decodePacket(ctx.roomId, bytes.subarray(0, n)), PacketError);
  }
  assertThrows(() => decodePacket(ctx.roomId, concatBytes(bytes, Uint8Array.of(0))), PacketError);
});

Deno.test("packet: a packet signed for another room id is a PacketError", () => {
  const { ctx, bytes } = twoFramePacket();
  assertThrows(() => decodePacket(toHex(rand(16)), bytes), PacketError);
  // Room ids are length-prefixed: a prefix or extension of the id does not verify either.
  assertThrows(() => decodePacket(ctx.roomId.slice(0, -1), bytes), PacketError);
  assertThrows(() => decodePacket(ctx.roomId + "0", bytes), PacketError);
});

Deno.test("packet: a frame count that disagrees with the frames is a PacketError even when signed", () => {
  const { ctx } = setup(false);
  const frames = [frame(0, utf8("a")), frame(1, utf8("b"))];
  const ok = resign(concatBytes(header(ctx, 2), ...frames), ctx.roomId, ctx);
  assertEquals(decodePacket(ctx.roomId, ok).frames.length, 2);
  for (const count of [0, 1, 3, MAX_FRAMES + 1, 0xffff]) {
    const bad = resign(concatBytes(header(ctx, count), ...frames), ctx.roomId, ctx);
    throwsAt(`count ${count}`, () => decodePacket(ctx.roomId, bad), PacketError);
  }
});

Deno.test("packet: a frame length that disagrees with the bytes is a PacketError even when signed", () => {
  const { ctx } = setup(false);
  const body = utf8("hello");
  for (const len of [0, 4, 6, 1000, 0xffffffff]) {
    const bad = resign(
      concatBytes(header(ctx, 1), frame(0, body, undefined, len)),
      ctx.roomId,
      ctx,
    );
    throwsAt(`length ${len}`, () => decodePacket(ctx.roomId, bad), PacketError);
  }
});

Deno.test("packet: unknown flags, a non-zero reserved byte or a wrong magic are PacketErrors", () => {
  const { ctx } = setup(false);
  const f = frame(0, utf8("x"));
  for (const [flags, reserved] of [[2, 0], [0x81, 0], [0, 1]]) {
    const bad = resign(concatBytes(header(ctx, 1, flags, reserved), f), ctx.roomId, ctx);
    throwsAt(`flags ${flags}/${reserved}`, () => decodePacket(ctx.roomId, bad), PacketError);
  }
  const unsigned = concatBytes(header(ctx, 1), f);
  unsigned[3] = 0x32; // "UBP2"
  assertThrows(() => decodePacket(ctx.roomId, resign(unsigned, ctx.roomId, ctx)), PacketError);
});

Deno.test("packet: a small-order sender key with an all-zero signature is refused", () => {
  const { ctx } = setup(false);
  const identity = Uint8Array.of(1, ...new Uint8Array(31));
  const h = header(ctx, 1);
  h.set(identity, 8);
  const forged = concatBytes(h, frame(0, utf8("x")), new Uint8Array(64));
  assertThrows(() => decodePacket(ctx.roomId, forged), PacketError);
});

Deno.test("packet: a member re-signing another sender's frames under its own key fails the AEAD", () => {
  // Every member holds the room key, so only the signature says who sent a
  // frame; the AAD binds the sender so a frame cannot be re-attributed.
  const { ctx, roomKey, bytes } = twoFramePacket();
  const victim = decodePacket(ctx.roomId, bytes);
  const mallory = keyPairFromSeed(generateSeed());
  const mctx = { ...ctx, signer: mallory };
  const reframed = resign(
    concatBytes(
      header(mctx, 2),
      ...victim.frames.map((f) => frame(f.index, f.body, f.nonce)),
    ),
    ctx.roomId,
    mctx,
  );
  const p = decodePacket(ctx.roomId, reframed); // the signature is genuinely Mallory's
  const rx = new Chain(initialChainKey(roomKey, { ...ctx, sender: p.sender }));
  for (const f of p.frames) {
    const aad = frameAad(ctx.roomId, p.epoch, p.sender, p.session, f.index);
    assertEquals(aeadDecrypt(rx.keyFor(f.index), f.nonce, f.body, aad), null);
  }
});

Deno.test("packet: frames moved to another epoch, session or index fail the AEAD", () => {
  const { ctx, roomKey, bytes } = twoFramePacket();
  const f = decodePacket(ctx.roomId, bytes).frames[0];
  const sender = ctx.signer.publicKey;
  const mk = new Chain(initialChainKey(roomKey, { ...ctx, sender })).keyFor(0);
  const ok = frameAad(ctx.roomId, ctx.epoch, sender, ctx.session, 0);
  assert(aeadDecrypt(mk, f.nonce, f.body, ok) !== null);
  for (
    const aad of [
      frameAad(ctx.roomId, ctx.epoch + 1, sender, ctx.session, 0),
      frameAad(ctx.roomId, ctx.epoch, sender, rand(16), 0),
      frameAad(ctx.roomId, ctx.epoch, sender, ctx.session, 1),
      frameAad(toHex(rand(16)), ctx.epoch, sender, ctx.session, 0),
    ]
  ) assertEquals(aeadDecrypt(mk, f.nonce, f.body, aad), null);
});

Deno.test("packet: encodePacket refuses 0 or more than MAX_FRAMES frames and keyless encrypted frames", () => {
  const { ctx } = setup();
  assertThrows(() => encodePacket(ctx, []), RangeError);
  const many = Array.from(
    { length: MAX_FRAMES + 1 },
    (_, index) => ({ index, key: rand(32), plaintext: new Uint8Array(0) }),
  );
  assertThrows(() => encodePacket(ctx, many), RangeError);
  assertEquals(
    decodePacket(ctx.roomId, encodePacket(ctx, many.slice(0, MAX_FRAMES))).frames.length,
    MAX_FRAMES,
  );
  assertThrows(() => encodePacket(ctx, [{ index: 0, key: null, plaintext: utf8("x") }]), Error);
});

Deno.test("packet: explicit nonces must be one 12-byte nonce per frame of an encrypted packet", () => {
  const { ctx } = setup();
  const frames = [{ index: 0, key: rand(32), plaintext: utf8("x") }];
  const n = rand(12);
  const p = decodePacket(ctx.roomId, encodePacket(ctx, frames, [n]));
  assertEquals(toHex(p.frames[0].nonce), toHex(n));
  assertThrows(() => encodePacket(ctx, frames, []), RangeError);
  assertThrows(() => encodePacket(ctx, frames, [n, n]), RangeError);
  assertThrows(() => encodePacket(ctx, frames, [rand(24)]), RangeError);
  assertThrows(() => encodePacket({ ...ctx, encrypted: false }, frames, [n]), RangeError);
});

Deno.test("packet: sign-only packets carry the plaintext with zero nonces and flag bit 0 clear", () => {
  const { ctx } = setup(false);
  const bytes = encodePacket(ctx, [{ index: 0, key: null, plaintext: utf8("visible") }]);
  assertEquals(bytes[4], 0);
  const p = decodePacket(ctx.roomId, bytes);
  assertEquals(p.encrypted, false);
  assertEquals(toHex(p.frames[0].nonce), "00".repeat(12));
  assertEquals(new TextDecoder().decode(p.frames[0].body), "visible");
});

Deno.test("packet: a timed packet signs its send time after the session id (flag bit 1)", () => {
  const { ctx } = setup(false);
  const sentAt = 1_700_000_000_123;
  const bytes = encodePacket({ ...ctx, sentAt }, [{ index: 0, key: null, plaintext: utf8("t") }]);
  assertEquals(bytes[4], 2);
  assertEquals(Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(60)), sentAt);
  const p = decodePacket(ctx.roomId, bytes);
  assertEquals([p.sentAt, p.frames[0].index], [sentAt, 0]);
  assertEquals(
    decodePacket(
      ctx.roomId,
      encodePacket(
        ctx,
        p.frames.map(() => ({
          index: 0,
          key: null,
          plaintext: utf8("t"),
        })),
      ),
    ).sentAt,
    null,
  );
  // The time is signed: moving it by 1 ms breaks the signature.
  const moved = bytes.slice();
  moved[67] ^= 1;
  assertThrows(() => decodePacket(ctx.roomId, moved), PacketError, "signature");
  const one = [{ index: 0, key: null, plaintext: utf8("t") }];
  assertThrows(() => encodePacket({ ...ctx, sentAt: -1 }, one), RangeError, "sentAt");
});
