/**
 * Interop with an independent implementation: libsodium (via
 * libsodium-wrappers-sumo, a test-only dependency) against our noble/node
 * composition. Everything libsodium does here uses only the calls
 * docs/protocol.md §2 names, so a libsodium client written from the document
 * alone would behave the same.
 */

import sodium from "libsodium-wrappers-sumo";
import { Identity } from "../lib/identity/identity.ts";
import { concatBytes, fromHex, lengthPrefixed, toHex, u16, u32, utf8 } from "../lib/e2e/bytes.ts";
import { openBox, sealBox } from "../lib/e2e/sealed_box.ts";
import { openRoomKey, sealRoomKey } from "../lib/e2e/room_key.ts";
import { Chain, initialChainKey } from "../lib/e2e/ratchet.ts";
import { decodePacket, encodePacket, openPacket } from "../lib/e2e/packet.ts";
import { signChange } from "../lib/e2e/membership.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

await sodium.ready;

const vectors = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/e2e_vectors.json", import.meta.url)),
);

const rand = (n: number) => sodium.randombytes_buf(n) as Uint8Array;

/** An identity both sides know: our Identity plus libsodium's Ed25519 key pair of the same seed. */
function pair(seed = rand(32), kexPriv = rand(32)) {
  const ours = new Identity(seed, kexPriv);
  const theirs = sodium.crypto_sign_seed_keypair(seed);
  return { ours, sodiumSignSk: theirs.privateKey as Uint8Array, sodiumSignPk: theirs.publicKey };
}

// ---- libsodium-only re-implementations of the spec (docs/protocol.md §2) ----

const hmacSha256 = (key: Uint8Array, msg: Uint8Array): Uint8Array =>
  sodium.crypto_auth_hmacsha256(msg, key);

/** RFC 5869 HKDF-SHA-256 with L = 32: one Extract, one Expand block. */
function hkdf32(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array): Uint8Array {
  const prk = hmacSha256(salt, ikm);
  return hmacSha256(prk, concatBytes(info, Uint8Array.of(1)));
}

function sodiumCk0(
  roomKey: Uint8Array,
  room: string,
  epoch: number,
  sender: Uint8Array,
  session: Uint8Array,
) {
  const info = concatBytes(
    utf8("unibus/chain/v2"),
    lengthPrefixed(room),
    u32(epoch),
    sender,
    session,
  );
  return hkdf32(roomKey, new Uint8Array(32), info);
}

/**
 * MK_index: each step is HKDF-SHA-256(ikm = CK, zero salt, "unibus/step/v2",
 * L = 64) = T(1) || T(2), MK the first block, the next CK the second.
 */
function sodiumMk(ck0: Uint8Array, index: number): Uint8Array {
  const info = utf8("unibus/step/v2");
  let ck = ck0;
  for (let i = 0;; i++) {
    const prk = hmacSha256(new Uint8Array(32), ck);
    const t1 = hmacSha256(prk, concatBytes(info, Uint8Array.of(1)));
    if (i === index) return t1;
    ck = hmacSha256(prk, concatBytes(t1, info, Uint8Array.of(2)));
  }
}

/** The 80-byte v2 header, field by field from docs/protocol.md §2.7. */
function sodiumHeader(h: {
  encrypted: boolean;
  count: number;
  sender: Uint8Array;
  epoch: number;
  session: Uint8Array;
  index: number;
  firstFrame: number;
  nonce: Uint8Array;
}): Uint8Array {
  return concatBytes(
    utf8("UBP2"),
    Uint8Array.of(h.encrypted ? 1 : 0, 0),
    u16(h.count),
    h.sender,
    u32(h.epoch),
    h.session,
    u32(h.index),
    u32(h.firstFrame),
    h.nonce,
  );
}

const sodiumBodyAad = (room: string, header: Uint8Array) =>
  concatBytes(utf8("unibus/body/v2"), lengthPrefixed(room), header);

/** What a v2 packet signature covers: context, room, SHA-256 of the packet before it. */
const sodiumSigned = (room: string, unsigned: Uint8Array) =>
  concatBytes(
    utf8("unibus/packet/v2"),
    lengthPrefixed(room),
    sodium.crypto_hash_sha256(unsigned),
  );

/** Frames of a decrypted body: u32 length || bytes, back to back. */
function sodiumFrames(plain: Uint8Array): string[] {
  const out: string[] = [];
  const dv = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
  for (let at = 0; at < plain.length;) {
    const len = dv.getUint32(at);
    out.push(sodium.to_string(plain.subarray(at + 4, at + 4 + len)));
    at += 4 + len;
  }
  return out;
}

Deno.test("interop: libsodium opens our sealed boxes and we open libsodium's", () => {
  for (const len of [0, 1, 32, 100, 1000]) {
    const msg = rand(len);
    const sk = rand(32);
    const pk = sodium.crypto_scalarmult_base(sk);
    const ours = sealBox(msg, pk);
    const opened = sodium.crypto_box_seal_open(ours, pk, sk);
    assertEquals(toHex(opened), toHex(msg), `libsodium opens ours (${len} bytes)`);
    const theirs = sodium.crypto_box_seal(msg, pk);
    assertEquals(toHex(openBox(theirs, pk, sk)!), toHex(msg), `we open libsodium's (${len} bytes)`);
  }
});

Deno.test("interop: the fixture's sealed box is crypto_box_easy with the BLAKE2b nonce, and libsodium opens it", () => {
  const v = vectors.roomKey;
  const bob = vectors.identities.bob;
  const esk = fromHex(v.ephemeralSecretHex);
  const epk = sodium.crypto_scalarmult_base(esk);
  assertEquals(toHex(epk), v.ephemeralPublicHex);
  const rpk = fromHex(bob.kexPubHex);
  const nonce = sodium.crypto_generichash(24, concatBytes(epk, rpk), null);
  assertEquals(toHex(nonce), v.sealNonceHex);
  // crypto_box_seal = epk || crypto_box_easy(m, nonce, rpk, esk): with the
  // fixed esk libsodium reproduces the vector byte for byte.
  const body = sodium.crypto_box_easy(fromHex(v.sealedPlaintextHex), nonce, rpk, esk);
  assertEquals(toHex(concatBytes(epk, body)), v.sealedHex);
  const opened = sodium.crypto_box_seal_open(fromHex(v.sealedHex), rpk, fromHex(bob.kexPrivHex));
  assertEquals(toHex(opened), v.sealedPlaintextHex);
  assertEquals(toHex(opened.subarray(opened.length - 32)), v.roomKeyHex);
  assert(sodium.crypto_sign_verify_detached(
    fromHex(v.signatureHex),
    fromHex(v.signedMessageHex),
    fromHex(vectors.identities.alice.signPubHex),
  ));
});

Deno.test("interop: a room key envelope sealed and signed by libsodium opens with openRoomKey", () => {
  const admin = pair();
  const member = pair();
  const room = toHex(rand(16));
  const epoch = 7;
  const roomKey = rand(32);
  const sealed = sodium.crypto_box_seal(
    concatBytes(lengthPrefixed(room), u32(epoch), roomKey),
    member.ours.kexPub,
  );
  const sig = sodium.crypto_sign_detached(
    concatBytes(
      utf8("unibus/room-key/v1"),
      lengthPrefixed(room),
      u32(epoch),
      member.ours.signPub,
      sealed,
    ),
    admin.sodiumSignSk,
  );
  const key = openRoomKey({
    envelope: concatBytes(sealed, sig),
    roomId: room,
    epoch,
    adminSignPub: admin.ours.signPub,
    me: member.ours,
  });
  assertEquals(toHex(key), toHex(roomKey));

  // And the other way: libsodium checks and opens one of ours.
  const ours = sealRoomKey({
    roomId: room,
    epoch,
    roomKey,
    memberSignPub: member.ours.signPub,
    memberKexPub: member.ours.kexPub,
    admin: admin.ours.signer,
  });
  const s = ours.subarray(0, ours.length - 64);
  assert(sodium.crypto_sign_verify_detached(
    ours.subarray(ours.length - 64),
    concatBytes(
      utf8("unibus/room-key/v1"),
      lengthPrefixed(room),
      u32(epoch),
      member.ours.signPub,
      s,
    ),
    admin.ours.signPub,
  ));
  const plain = sodium.crypto_box_seal_open(s, member.ours.kexPub, member.ours.kexPriv);
  assertEquals(toHex(plain), toHex(concatBytes(lengthPrefixed(room), u32(epoch), roomKey)));
});

Deno.test("interop: libsodium derives our kex keys and verifies our kex binding, membership and packet signatures", () => {
  for (const v of Object.values(vectors.identities) as Array<Record<string, string>>) {
    assert(sodium.crypto_sign_verify_detached(
      fromHex(v.kexSigHex),
      utf8(v.kexBindingMessageUtf8),
      fromHex(v.signPubHex),
    ));
    assertEquals(toHex(sodium.crypto_scalarmult_base(fromHex(v.kexPrivHex))), v.kexPubHex);
    // Ed25519 is deterministic: libsodium signs to the same bytes.
    const kp = sodium.crypto_sign_seed_keypair(fromHex(v.signSeedHex));
    assertEquals(toHex(kp.publicKey), v.signPubHex);
    assertEquals(
      toHex(sodium.crypto_sign_detached(utf8(v.kexBindingMessageUtf8), kp.privateKey)),
      v.kexSigHex,
    );
  }
  for (const c of [...vectors.membership.changes, ...vectors.membershipBulk.changes]) {
    assert(sodium.crypto_sign_verify_detached(fromHex(c.sigHex), utf8(c.text), fromHex(c.body.by)));
    assertEquals(toHex(sodium.crypto_hash_sha256(utf8(c.text))), c.hashHex);
  }
  for (const p of vectors.packets) {
    const bytes = fromHex(p.packetHex);
    assert(
      sodium.crypto_sign_verify_detached(
        bytes.subarray(bytes.length - 64),
        sodiumSigned(p.roomId, bytes.subarray(0, bytes.length - 64)),
        bytes.subarray(8, 40),
      ),
      p.name,
    );
  }
  // Fresh, random material too, not only the fixture.
  const a = pair();
  const change = signChange({
    room: toHex(rand(16)),
    seq: 0,
    prev: "0".repeat(64),
    op: "create",
    subject: "x.y",
    policy: { encrypt: true, sign: true, persist: false },
    member: a.ours.signPubHex,
    kex: a.ours.kexPubHex,
    kexSig: a.ours.kexSigHex,
    role: "admin",
    epoch: 0,
    by: a.ours.signPubHex,
    at: Date.now(),
  }, a.ours.signer);
  assert(
    sodium.crypto_sign_verify_detached(
      sodium.from_base64(change.sig, sodium.base64_variants.ORIGINAL),
      utf8(change.text),
      a.ours.signPub,
    ),
  );
});

Deno.test("interop: libsodium derives CK_0 and MK_i itself and decrypts our frames", () => {
  const v = vectors.chain;
  const ck0 = sodiumCk0(
    fromHex(v.roomKeyHex),
    v.roomId,
    v.epoch,
    fromHex(v.senderHex),
    fromHex(v.sessionHex),
  );
  assertEquals(toHex(ck0), v.chainKeysHex[0]);
  for (const [i, mk] of v.messageKeysHex.entries()) {
    assertEquals(toHex(sodiumMk(ck0, i)), mk, `MK_${i}`);
  }

  // The fixture packet, parsed by hand from the byte layout.
  const p = vectors.packets[0];
  const bytes = fromHex(p.packetHex);
  const dv = new DataView(bytes.buffer, bytes.byteOffset);
  const header = bytes.subarray(0, 80);
  assertEquals(
    toHex(header),
    toHex(sodiumHeader({
      encrypted: true,
      count: p.framesUtf8.length,
      sender: fromHex(v.senderHex),
      epoch: p.epoch,
      session: fromHex(p.sessionHex),
      index: p.index,
      firstFrame: p.firstFrame,
      nonce: fromHex(p.nonceHex),
    })),
  );
  const plain = sodium.crypto_aead_chacha20poly1305_ietf_decrypt(
    null,
    bytes.subarray(80, bytes.length - 64),
    sodiumBodyAad(p.roomId, header),
    bytes.subarray(68, 80),
    sodiumMk(ck0, dv.getUint32(60)),
  );
  assertEquals(sodiumFrames(plain), p.framesUtf8);

  // Fresh material: packets 0 and 3 from our encoder (1 and 2 skipped).
  const s = pair();
  const room = toHex(rand(16));
  const roomKey = rand(32);
  const session = rand(16);
  const chain = new Chain(
    initialChainKey(roomKey, { roomId: room, epoch: 2, sender: s.ours.signPub, session }),
  );
  const ck = sodiumCk0(roomKey, room, 2, s.sodiumSignPk, session);
  for (const [index, firstFrame, texts] of [[0, 0, ["a", ""]], [3, 7, ["b", "c", "d"]]] as const) {
    const packet = encodePacket(
      { roomId: room, epoch: 2, session, signer: s.ours.signer, encrypted: true },
      { index, firstFrame, key: chain.keyFor(index) },
      texts.map(utf8),
    );
    assert(sodium.crypto_sign_verify_detached(
      packet.subarray(packet.length - 64),
      sodiumSigned(room, packet.subarray(0, packet.length - 64)),
      s.sodiumSignPk,
    ));
    const pt = sodium.crypto_aead_chacha20poly1305_ietf_decrypt(
      null,
      packet.subarray(80, packet.length - 64),
      sodiumBodyAad(room, packet.subarray(0, 80)),
      packet.subarray(68, 80),
      sodiumMk(ck, index),
    );
    assertEquals(sodiumFrames(pt), [...texts]);
  }
});

Deno.test("interop: our decoder accepts a packet built entirely with libsodium and decrypts it", () => {
  const s = pair();
  const room = toHex(rand(16));
  const epoch = 9;
  const roomKey = rand(32);
  const session = rand(16);
  const sender = s.sodiumSignPk as Uint8Array;
  const ck0 = sodiumCk0(roomKey, room, epoch, sender, session);
  const texts = ["first", "", "third, longer than the others: ".repeat(4)];
  const index = 4;
  const header = sodiumHeader({
    encrypted: true,
    count: texts.length,
    sender,
    epoch,
    session,
    index,
    firstFrame: 11,
    nonce: rand(12),
  });
  const body = sodium.crypto_aead_chacha20poly1305_ietf_encrypt(
    concatBytes(...texts.flatMap((t) => [u32(utf8(t).length), utf8(t)])),
    sodiumBodyAad(room, header),
    null,
    header.subarray(68, 80),
    sodiumMk(ck0, index),
  );
  const unsigned = concatBytes(header, body);
  const sig = sodium.crypto_sign_detached(sodiumSigned(room, unsigned), s.sodiumSignSk);
  const packet = decodePacket(room, concatBytes(unsigned, sig));
  assertEquals(
    [packet.encrypted, packet.epoch, packet.index, packet.firstFrame, toHex(packet.sender)],
    [true, epoch, index, 11, s.ours.signPubHex],
  );
  const chain = new Chain(
    initialChainKey(roomKey, {
      roomId: room,
      epoch,
      sender: packet.sender,
      session: packet.session,
    }),
  );
  const frames = openPacket(room, packet, chain.keyFor(packet.index));
  assertEquals(frames?.map((f) => new TextDecoder().decode(f)), texts);
});

Deno.test("interop: libsodium derives the reply session, its MK_0, verifies and opens the timed reply", () => {
  const r = vectors.reply;
  const req = vectors.timedPacket;
  const room = vectors.room.id;
  const bob = vectors.identities[r.requester];
  const alice = vectors.identities[r.replier];
  // The reply session: SHA-256 over the request's sender, session, epoch, frame index.
  const session = sodium.crypto_hash_sha256(concatBytes(
    utf8("unibus/reply/v1"),
    fromHex(bob.signPubHex),
    fromHex(req.sessionHex),
    u32(req.epoch),
    u32(req.firstFrame),
  )).subarray(0, 16);
  assertEquals(toHex(session), r.replySessionHex);
  const ck0 = sodiumCk0(
    fromHex(vectors.roomKey.roomKeyHex),
    room,
    r.epoch,
    fromHex(alice.signPubHex),
    session,
  );
  assertEquals(toHex(sodiumMk(ck0, 0)), r.messageKeyHex);
  // A timed packet: flags 3, the u64 time after the 80 bytes, an 88-byte header.
  const bytes = fromHex(r.packetHex);
  assertEquals(bytes[4], 3);
  const header = bytes.subarray(0, 88);
  assertEquals(
    Number(new DataView(bytes.buffer, bytes.byteOffset + 80, 8).getBigUint64(0)),
    r.sentAtMs,
  );
  assert(sodium.crypto_sign_verify_detached(
    bytes.subarray(bytes.length - 64),
    sodiumSigned(room, bytes.subarray(0, bytes.length - 64)),
    fromHex(alice.signPubHex),
  ));
  const plain = sodium.crypto_aead_chacha20poly1305_ietf_decrypt(
    null,
    bytes.subarray(88, bytes.length - 64),
    sodiumBodyAad(room, header),
    bytes.subarray(68, 80),
    sodiumMk(ck0, 0),
  );
  assertEquals(sodiumFrames(plain), [r.frameUtf8]);
});
