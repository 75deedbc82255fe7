/**
 * Unit tests of the E2E primitives: the sender ratchet, the frame AEAD, sealed
 * boxes and the packet format. Attacks are tested as an attacker would mount
 * them: through the public API and the wire bytes only.
 */

import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { generateSeed, keyPairFromSeed } from "../lib/crypto/ed25519.ts";
import { generateIdentity } from "../lib/identity/identity.ts";
import { concatBytes, lengthPrefixed, toHex, u16, u32, utf8 } from "../lib/e2e/bytes.ts";
import { aeadDecrypt, aeadEncrypt } from "../lib/e2e/aead.ts";
import { openBox, SEAL_OVERHEAD, sealBox } from "../lib/e2e/sealed_box.ts";
import {
  Chain,
  initialChainKey,
  MAX_HISTORY_SKIP,
  MAX_SKIP,
  RatchetPassedError,
} from "../lib/e2e/ratchet.ts";
import {
  bodyAad,
  decodePacket,
  encodePacket,
  HEADER_BYTES,
  MAX_FRAMES,
  openPacket,
  type PacketContext,
  PacketError,
  packetSignedMessage,
  PacketVersionError,
} from "../lib/e2e/packet.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";

const rand = (n: number) => crypto.getRandomValues(new Uint8Array(n));
/** One ratchet step by the spec, with @noble's HKDF: [MK_n, CK_n+1]. */
const step = (ck: Uint8Array) => {
  const okm = hkdf(sha256, ck, new Uint8Array(32), utf8("unibus/step/v2"), 64);
  return [okm.slice(0, 32), okm.slice(32)];
};

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
  // CK_i and MK_i by the spec, computed outside the class.
  const cks = [ck0];
  const mks: Uint8Array[] = [];
  for (let i = 0; i < 9; i++) {
    const [mk, next] = step(cks[i]);
    mks.push(mk);
    cks.push(next);
  }
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
  assertEquals(toHex(chain.next()), toHex(step(keep)[0]));
  const again = keep.slice();
  new Chain(again).next();
  assertEquals(toHex(again), toHex(keep), "nor does the chain wipe the caller's buffer");
});

Deno.test("ratchet: skipping more than MAX_SKIP ahead is refused without moving the chain", () => {
  const chain = new Chain(rand(32));
  assertThrows(() => chain.keyFor(MAX_SKIP + 1), RangeError);
  assertEquals(chain.index, 0);
});

Deno.test("ratchet: a history reader's larger skip limit reaches far indices, still bounded", () => {
  const ck0 = rand(32);
  const far = MAX_SKIP * 4;
  const history = new Chain(ck0, 0, MAX_HISTORY_SKIP);
  const mk = history.keyFor(far);
  const live = new Chain(ck0);
  for (let i = 0; i < far; i += MAX_SKIP) live.keyFor(i + MAX_SKIP - 1);
  assertEquals(toHex(live.keyFor(far)), toHex(mk), "the same key by small steps");
  assertThrows(() => new Chain(ck0, 0, MAX_HISTORY_SKIP).keyFor(MAX_HISTORY_SKIP + 1), RangeError);
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

Deno.test("sealed box: a low-order recipient key is refused, and a box whose ephemeral key is low-order does not open", () => {
  const r = generateIdentity();
  // The all-zero point and the order-8 point from libsodium's blocklist.
  const lowOrder = [
    new Uint8Array(32),
    Uint8Array.from(
      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800".match(/../g)!
        .map((h) => parseInt(h, 16)),
    ),
  ];
  for (const pub of lowOrder) {
    assertThrows(() => sealBox(utf8("x"), pub), Error);
    const forged = concatBytes(pub, rand(16 + 5));
    assertEquals(openBox(forged, r.kexPub, r.kexPriv), null);
  }
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

/** Packet 0 of a session: frames 0 and 1. */
function twoFramePacket() {
  const s = setup();
  const frames = [utf8("one"), utf8("two, a little longer")];
  return {
    ...s,
    bytes: encodePacket(s.ctx, { index: 0, firstFrame: 0, key: s.chain.keyFor(0) }, frames),
  };
}

/** Re-signs arbitrary unsigned bytes as `signer` would: what a crafted packet looks like. */
function resign(unsigned: Uint8Array, roomId: string, ctx: PacketContext): Uint8Array {
  return concatBytes(unsigned, ctx.signer.sign(packetSignedMessage(roomId, unsigned)));
}

/** A header for hand-built packets (docs/protocol.md §2.7). */
function header(
  ctx: PacketContext,
  count: number,
  o: { flags?: number; reserved?: number; index?: number; first?: number; nonce?: Uint8Array } = {},
) {
  return concatBytes(
    utf8("UBP2"),
    Uint8Array.of(o.flags ?? (ctx.encrypted ? 1 : 0), o.reserved ?? 0),
    u16(count),
    ctx.signer.publicKey,
    u32(ctx.epoch),
    ctx.session,
    u32(o.index ?? 0),
    u32(o.first ?? 0),
    o.nonce ?? new Uint8Array(12),
  );
}

/** Plaintext frames as the body lays them out; `len` overrides the length field. */
function frame(body: Uint8Array, len = body.length) {
  return concatBytes(u32(len), body);
}

Deno.test("packet: a valid packet decodes to what was sent and opens once per index", () => {
  const { ctx, roomKey, bytes } = twoFramePacket();
  const p = decodePacket(ctx.roomId, bytes);
  assertEquals([p.encrypted, p.epoch, p.index, p.firstFrame, p.count], [true, 4, 0, 0, 2]);
  assertEquals(toHex(p.sender), toHex(ctx.signer.publicKey));
  assertEquals(toHex(p.session), toHex(ctx.session));
  const rx = new Chain(initialChainKey(roomKey, { ...ctx, sender: p.sender }));
  const frames = openPacket(ctx.roomId, p, rx.keyFor(p.index));
  assertEquals(frames?.map((f) => new TextDecoder().decode(f)), ["one", "two, a little longer"]);
  // Delivered again, the packet is a replay: the receiver's chain refuses its index.
  assertThrows(() => rx.keyFor(decodePacket(ctx.roomId, bytes).index), RatchetPassedError);
});

Deno.test("packet: encrypted packets get distinct random nonces by default", () => {
  const { ctx, chain } = setup();
  const a = decodePacket(
    ctx.roomId,
    encodePacket(ctx, { index: 0, firstFrame: 0, key: chain.keyFor(0) }, [utf8("x")]),
  );
  const b = decodePacket(
    ctx.roomId,
    encodePacket(ctx, { index: 1, firstFrame: 1, key: chain.keyFor(1) }, [utf8("x")]),
  );
  assert(toHex(a.nonce) !== toHex(b.nonce));
  assert(toHex(a.nonce) !== "00".repeat(12));
});

Deno.test("packet: a flipped bit anywhere (header, body, signature) is a PacketError", () => {
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

Deno.test("packet: the signature covers SHA-256 of the packet, context and room, nothing less", () => {
  const { ctx, bytes } = twoFramePacket();
  const unsigned = bytes.subarray(0, bytes.length - 64);
  const sig = bytes.subarray(bytes.length - 64);
  const msg = packetSignedMessage(ctx.roomId, unsigned);
  assertEquals(
    toHex(msg),
    toHex(concatBytes(utf8("unibus/packet/v2"), lengthPrefixed(ctx.roomId), sha256(unsigned))),
  );
  // A signature over the raw packet (v1's way) does not verify as v2.
  const raw = ctx.signer.sign(
    concatBytes(utf8("unibus/packet/v2"), lengthPrefixed(ctx.roomId), unsigned),
  );
  assertThrows(() => decodePacket(ctx.roomId, concatBytes(unsigned, raw)), PacketError);
  assertEquals(decodePacket(ctx.roomId, concatBytes(unsigned, sig)).count, 2);
});

Deno.test("packet: a frame count that disagrees with the frames is a PacketError even when signed", () => {
  const { ctx } = setup(false);
  const frames = [frame(utf8("a")), frame(utf8("b"))];
  const ok = decodePacket(
    ctx.roomId,
    resign(concatBytes(header(ctx, 2), ...frames), ctx.roomId, ctx),
  );
  assertEquals(openPacket(ctx.roomId, ok, null)?.length, 2);
  for (const count of [1, 3]) {
    // Refused when decoded (too short for its count) or when opened.
    const bad = resign(concatBytes(header(ctx, count), ...frames), ctx.roomId, ctx);
    throwsAt(
      `count ${count}`,
      () => openPacket(ctx.roomId, decodePacket(ctx.roomId, bad), null),
      PacketError,
    );
  }
  for (const count of [0, MAX_FRAMES + 1, 0xffff]) {
    const bad = resign(concatBytes(header(ctx, count), ...frames), ctx.roomId, ctx);
    throwsAt(`count ${count}`, () => decodePacket(ctx.roomId, bad), PacketError);
  }
});

Deno.test("packet: a frame length that disagrees with the bytes is a PacketError even when signed", () => {
  const { ctx } = setup(false);
  const body = utf8("hello");
  for (const len of [0, 4, 6, 1000, 0xffffffff]) {
    const p = decodePacket(
      ctx.roomId,
      resign(concatBytes(header(ctx, 1), frame(body, len)), ctx.roomId, ctx),
    );
    throwsAt(`length ${len}`, () => openPacket(ctx.roomId, p, null), PacketError);
  }
});

Deno.test("packet: unknown flags, a non-zero reserved byte, a non-zero plaintext nonce or a wrong magic are PacketErrors", () => {
  const { ctx } = setup(false);
  const f = frame(utf8("x"));
  for (const [flags, reserved] of [[2, 0], [0x81, 0], [0, 1]]) {
    const bad = resign(concatBytes(header(ctx, 1, { flags, reserved }), f), ctx.roomId, ctx);
    throwsAt(`flags ${flags}/${reserved}`, () => decodePacket(ctx.roomId, bad), PacketError);
  }
  const nonced = resign(concatBytes(header(ctx, 1, { nonce: rand(12) }), f), ctx.roomId, ctx);
  assertThrows(() => decodePacket(ctx.roomId, nonced), PacketError, "nonce");
  const unsigned = concatBytes(header(ctx, 1), f);
  unsigned[0] = 0x58; // "XBP2"
  assertThrows(() => decodePacket(ctx.roomId, resign(unsigned, ctx.roomId, ctx)), PacketError);
});

Deno.test("packet: a packet of another version is a PacketVersionError naming both versions", () => {
  const { ctx } = setup(false);
  for (const [digit, version] of [[0x31, 1], [0x33, 3]]) {
    const unsigned = concatBytes(header(ctx, 1), frame(utf8("x")));
    unsigned[3] = digit;
    const err = assertThrows(
      () => decodePacket(ctx.roomId, resign(unsigned, ctx.roomId, ctx)),
      PacketVersionError,
      `packet format v${version} is not supported: this client speaks v2`,
    );
    assertEquals(err.version, version);
    assert(err instanceof PacketError, "a version error is still a PacketError");
  }
  // Even a bare 4-byte "UBP1" says so.
  assertThrows(() => decodePacket(ctx.roomId, utf8("UBP1")), PacketVersionError);
});

Deno.test("packet: a small-order sender key with an all-zero signature is refused", () => {
  const { ctx } = setup(false);
  const identity = Uint8Array.of(1, ...new Uint8Array(31));
  const h = header(ctx, 1);
  h.set(identity, 8);
  const forged = concatBytes(h, frame(utf8("x")), new Uint8Array(64));
  assertThrows(() => decodePacket(ctx.roomId, forged), PacketError);
});

Deno.test("packet: a member re-signing another sender's body under its own key fails the AEAD", () => {
  // Every member holds the room key, so only the signature says who sent a
  // packet; the AAD binds the sender so a body cannot be re-attributed.
  const { ctx, roomKey, bytes } = twoFramePacket();
  const victim = decodePacket(ctx.roomId, bytes);
  const mallory = keyPairFromSeed(generateSeed());
  const mctx = { ...ctx, signer: mallory };
  const reframed = resign(
    concatBytes(header(mctx, 2, { nonce: victim.nonce }), victim.body),
    ctx.roomId,
    mctx,
  );
  const p = decodePacket(ctx.roomId, reframed); // the signature is genuinely Mallory's
  const rx = new Chain(initialChainKey(roomKey, { ...ctx, sender: p.sender }));
  assertEquals(openPacket(ctx.roomId, p, rx.keyFor(p.index)), null);
  // Even with the victim's own message key, the AAD (sender in the header) fails.
  const mk = new Chain(initialChainKey(roomKey, { ...ctx, sender: victim.sender })).keyFor(0);
  assertEquals(openPacket(ctx.roomId, p, mk), null);
});

Deno.test("packet: a body moved to another room, epoch, session, index or frame numbering fails the AEAD", () => {
  const { ctx, roomKey, bytes } = twoFramePacket();
  const p = decodePacket(ctx.roomId, bytes);
  const sender = ctx.signer.publicKey;
  const mk = new Chain(initialChainKey(roomKey, { ...ctx, sender })).keyFor(0);
  assert(aeadDecrypt(mk, p.nonce, p.body, bodyAad(ctx.roomId, p.header)) !== null);
  const moved = (o: Partial<PacketContext>, h: Parameters<typeof header>[2] = {}) =>
    header({ ...ctx, ...o }, 2, { nonce: p.nonce, ...h });
  for (
    const [name, aad] of [
      ["epoch", bodyAad(ctx.roomId, moved({ epoch: ctx.epoch + 1 }))],
      ["session", bodyAad(ctx.roomId, moved({ session: rand(16) }))],
      ["index", bodyAad(ctx.roomId, moved({}, { index: 1 }))],
      ["first frame", bodyAad(ctx.roomId, moved({}, { first: 7 }))],
      ["room", bodyAad(toHex(rand(16)), p.header)],
    ] as const
  ) assertEquals(aeadDecrypt(mk, p.nonce, p.body, aad), null, name);
  assertEquals(toHex(moved({})), toHex(p.header), "the unmoved header is the packet's");
});

Deno.test("packet: encodePacket refuses 0 or more than MAX_FRAMES frames, keyless encrypted packets and indices past u32", () => {
  const { ctx } = setup();
  const at = { index: 0, firstFrame: 0, key: rand(32) };
  assertThrows(() => encodePacket(ctx, at, []), RangeError);
  const many = Array.from({ length: MAX_FRAMES + 1 }, () => new Uint8Array(0));
  assertThrows(() => encodePacket(ctx, at, many), RangeError);
  assertEquals(decodePacket(ctx.roomId, encodePacket(ctx, at, many.slice(1))).count, MAX_FRAMES);
  assertThrows(() => encodePacket(ctx, { ...at, key: null }, [utf8("x")]), Error);
  assertThrows(() => encodePacket(ctx, { ...at, index: 2 ** 32 }, [utf8("x")]), RangeError);
  assertThrows(
    () => encodePacket(ctx, { ...at, firstFrame: 2 ** 32 - 1 }, many.slice(0, 2)),
    RangeError,
  );
});

Deno.test("packet: an explicit nonce must be 12 bytes and for an encrypted packet", () => {
  const { ctx } = setup();
  const at = { index: 0, firstFrame: 0, key: rand(32) };
  const n = rand(12);
  const p = decodePacket(ctx.roomId, encodePacket(ctx, at, [utf8("x")], n));
  assertEquals(toHex(p.nonce), toHex(n));
  assertEquals(toHex(p.header.subarray(68, HEADER_BYTES)), toHex(n));
  assertThrows(() => encodePacket(ctx, at, [utf8("x")], rand(24)), RangeError);
  assertThrows(() => encodePacket({ ...ctx, encrypted: false }, at, [utf8("x")], n), RangeError);
});

Deno.test("packet: sign-only packets carry the plaintext with a zero nonce and flag bit 0 clear", () => {
  const { ctx } = setup(false);
  const bytes = encodePacket(ctx, { index: 3, firstFrame: 9, key: null }, [utf8("visible")]);
  assertEquals(bytes[4], 0);
  const p = decodePacket(ctx.roomId, bytes);
  assertEquals([p.encrypted, p.index, p.firstFrame], [false, 3, 9]);
  assertEquals(toHex(p.nonce), "00".repeat(12));
  assertEquals(openPacket(ctx.roomId, p, null)?.map((f) => new TextDecoder().decode(f)), [
    "visible",
  ]);
});

Deno.test("packet: a timed packet signs its send time after the nonce (flag bit 1), and the AEAD binds it", () => {
  const { ctx } = setup(false);
  const sentAt = 1_700_000_000_123;
  const at = { index: 0, firstFrame: 0, key: null };
  const bytes = encodePacket({ ...ctx, sentAt }, at, [utf8("t")]);
  assertEquals(bytes[4], 2);
  assertEquals(Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(80)), sentAt);
  const p = decodePacket(ctx.roomId, bytes);
  assertEquals([p.sentAt, p.firstFrame, p.header.length], [sentAt, 0, HEADER_BYTES + 8]);
  assertEquals(openPacket(ctx.roomId, p, null)?.map((f) => new TextDecoder().decode(f)), ["t"]);
  assertEquals(decodePacket(ctx.roomId, encodePacket(ctx, at, [utf8("t")])).sentAt, null);
  // The time is signed: moving it by 1 ms breaks the signature.
  const moved = bytes.slice();
  moved[87] ^= 1;
  assertThrows(() => decodePacket(ctx.roomId, moved), PacketError, "signature");
  assertThrows(() => encodePacket({ ...ctx, sentAt: -1 }, at, [utf8("t")]), RangeError, "sentAt");
  // Encrypted: the send time is in the header the body's AEAD binds.
  const enc = setup(true);
  const key = enc.chain.keyFor(0);
  const timed = decodePacket(
    enc.ctx.roomId,
    encodePacket({ ...enc.ctx, sentAt }, { index: 0, firstFrame: 0, key }, [utf8("x")]),
  );
  const shifted = timed.header.slice();
  shifted[87] ^= 1;
  assertEquals(aeadDecrypt(key, timed.nonce, timed.body, bodyAad(enc.ctx.roomId, shifted)), null);
  assert(aeadDecrypt(key, timed.nonce, timed.body, bodyAad(enc.ctx.roomId, timed.header)) !== null);
});
