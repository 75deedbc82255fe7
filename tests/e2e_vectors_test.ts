/**
 * tests/fixtures/e2e_vectors.json recomputed from its own inputs with the
 * library, byte for byte. The fixture is normative (docs/protocol.md §2), so
 * any change here is a wire format change. tests/e2e_interop_test.ts checks
 * the same vectors against libsodium.
 */

import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { x25519 } from "@noble/curves/ed25519.js";
import { Identity, kexBindingMessage, verifyKexBinding } from "../lib/identity/identity.ts";
import { verifySignature } from "../lib/crypto/ed25519.ts";
import { concatBytes, fromHex, lengthPrefixed, toHex, u32, utf8 } from "../lib/e2e/bytes.ts";
import {
  type ChangeBody,
  changeHash,
  changeText,
  MembershipError,
  parseChange,
  signChange,
  verifyLog,
} from "../lib/e2e/membership.ts";
import { openRoomKey, sealRoomKey } from "../lib/e2e/room_key.ts";
import { Chain, initialChainKey } from "../lib/e2e/ratchet.ts";
import {
  decodePacket,
  encodePacket,
  HEADER_BYTES,
  openPacket,
  PacketError,
  PacketVersionError,
  replySessionFor,
} from "../lib/e2e/packet.ts";
import { aeadDecrypt } from "../lib/e2e/aead.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";

interface IdentityVector {
  signSeedHex: string;
  kexPrivHex: string;
  signPubHex: string;
  kexPubHex: string;
  kexBindingMessageUtf8: string;
  kexSigHex: string;
}
interface PacketVector {
  name: string;
  roomId: string;
  encrypted: boolean;
  sender: "alice" | "bob" | "carol";
  epoch: number;
  sessionHex: string;
  index: number;
  firstFrame: number;
  framesUtf8: string[];
  nonceHex: string;
  messageKeyHex?: string;
  headerHex?: string;
  framesPlainHex?: string;
  aadHex?: string;
  bodyHex?: string;
  signedPrefixHex: string;
  digestHex: string;
  signedMessageHex?: string;
  signatureHex: string;
  packetHex: string;
}
interface MembershipVectors {
  changes: Array<{
    body: ChangeBody;
    text: string;
    sigBase64: string;
    sigHex: string;
    hashHex: string;
  }>;
  final: {
    epoch: number;
    seq: number;
    headHex: string;
    members: Array<{ signPubHex: string; kexPubHex: string; role: string }>;
    epochs: Record<string, Array<{ signPubHex: string; kexPubHex: string; role: string }>>;
  };
}
interface Vectors {
  identities: Record<"alice" | "bob" | "carol", IdentityVector>;
  room: {
    id: string;
    subject: string;
    policy: { encrypt: boolean; sign: boolean; persist: boolean };
  };
  membership: MembershipVectors;
  membershipBulk: MembershipVectors;
  roomKey: {
    roomId: string;
    epoch: number;
    roomKeyHex: string;
    admin: "alice";
    member: "bob";
    ephemeralSecretHex: string;
    ephemeralPublicHex: string;
    sealedPlaintextHex: string;
    sealNonceHex: string;
    sealedHex: string;
    signedMessageHex: string;
    signatureHex: string;
    envelopeHex: string;
  };
  chain: {
    roomId: string;
    epoch: number;
    sender: "bob";
    senderHex: string;
    sessionHex: string;
    roomKeyHex: string;
    hkdfSaltHex: string;
    hkdfInfoHex: string;
    prkHex: string;
    chainKeysHex: string[];
    messageKeysHex: string[];
  };
  packets: PacketVector[];
  timedPacket: {
    roomId: string;
    sender: "bob";
    epoch: number;
    sessionHex: string;
    index: number;
    firstFrame: number;
    sentAtMs: number;
    framesUtf8: string[];
    nonceHex: string;
    messageKeyHex: string;
    headerHex: string;
    aadHex: string;
    signatureHex: string;
    packetHex: string;
  };
  reply: {
    requester: "bob";
    replier: "alice";
    epoch: number;
    replySessionInputHex: string;
    replySessionHex: string;
    chainKey0Hex: string;
    messageKeyHex: string;
    sentAtMs: number;
    frameUtf8: string;
    nonceHex: string;
    packetHex: string;
  };
  membershipCreateMany: MembershipVectors;
  membershipRefused: Array<
    { name: string; rule: string; changes: Array<{ text: string; sigBase64: string }> }
  >;
  oldVersionPacketHex: string;
}

const vectors = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/e2e_vectors.json", import.meta.url)),
) as Vectors;

const ids = Object.fromEntries(
  Object.entries(vectors.identities).map((
    [k, v],
  ) => [k, new Identity(fromHex(v.signSeedHex), fromHex(v.kexPrivHex))]),
) as Record<"alice" | "bob" | "carol", Identity>;

Deno.test("vectors: identities derive their public keys and kex binding signatures", () => {
  for (const [name, v] of Object.entries(vectors.identities)) {
    const id = ids[name as keyof typeof ids];
    assertEquals(id.signPubHex, v.signPubHex, name);
    assertEquals(id.kexPubHex, v.kexPubHex, name);
    const msg = kexBindingMessage(v.signPubHex, v.kexPubHex);
    assertEquals(new TextDecoder().decode(msg), v.kexBindingMessageUtf8, name);
    assertEquals(
      v.kexBindingMessageUtf8,
      `unibus/kex-binding/v1\n${v.signPubHex}\n${v.kexPubHex}`,
      name,
    );
    assertEquals(id.kexSigHex, v.kexSigHex, name);
    assert(verifyKexBinding(v.signPubHex, v.kexPubHex, v.kexSigHex), name);
  }
  // RFC 7748 §6.1 public keys: the fixture's X25519 inputs are the RFC's.
  assertEquals(
    vectors.identities.alice.kexPubHex,
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
  );
  assertEquals(
    vectors.identities.bob.kexPubHex,
    "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
  );
});

function checkMembershipVectors(v: MembershipVectors) {
  const changes = v.changes;
  for (const [i, c] of changes.entries()) {
    assertEquals(changeText(c.body), c.text, `change ${i} text`);
    assertEquals(parseChange(c.text), c.body, `change ${i} parses back`);
    const signer = Object.values(ids).find((id) => id.signPubHex === c.body.by)!;
    const signed = signChange(c.body, signer.signer);
    assertEquals(signed.sig, c.sigBase64, `change ${i} signature`);
    assertEquals(toHex(Uint8Array.from(atob(c.sigBase64), (ch) => ch.charCodeAt(0))), c.sigHex);
    assertEquals(changeHash(signed), c.hashHex, `change ${i} hash`);
    assertEquals(toHex(sha256(utf8(c.text))), c.hashHex);
    assertEquals(c.body.prev, i === 0 ? "0".repeat(64) : changes[i - 1].hashHex);
  }
  const state = verifyLog(
    vectors.room.id,
    changes.map((c) => ({ text: c.text, sig: c.sigBase64 })),
  );
  const f = v.final;
  assertEquals([state.epoch, state.seq, state.head], [f.epoch, f.seq, f.headHex]);
  const list = (m: Map<string, { signPub: string; kexPub: string; role: string }>) =>
    [...m.values()].map((v) => ({ signPubHex: v.signPub, kexPubHex: v.kexPub, role: v.role }));
  assertEquals(list(state.members), f.members);
  assertEquals(
    Object.fromEntries([...state.epochs].map(([e, m]) => [String(e), list(m)])),
    f.epochs,
  );
  assertEquals(state.subject, vectors.room.subject);
  assertEquals(state.policy, vectors.room.policy);
}

Deno.test("vectors: membership texts, signatures and hashes recompute and the log verifies", () => {
  assertEquals(vectors.membership.changes.map((c) => c.body.op), [
    "create",
    "add",
    "add",
    "remove",
  ]);
  checkMembershipVectors(vectors.membership);
});

Deno.test("vectors: a bulk membership log (v2 create with members, v2 add of two) recomputes and verifies", () => {
  const changes = vectors.membershipBulk.changes;
  assertEquals(changes.map((c) => c.body.op), ["create", "remove", "add"]);
  assertEquals(changes.map((c) => c.text.split("\n")[0]), [
    "unibus/membership/v2",
    "unibus/membership/v1",
    "unibus/membership/v2",
  ]);
  checkMembershipVectors(vectors.membershipBulk);
  assertEquals(vectors.membershipBulk.final.members.length, 3);
});

Deno.test("vectors: the sealed room key envelope reproduces with the fixed ephemeral key and opens", () => {
  const v = vectors.roomKey;
  const admin = ids[v.admin];
  const member = ids[v.member];
  const roomKey = fromHex(v.roomKeyHex);
  const esk = fromHex(v.ephemeralSecretHex);
  assertEquals(toHex(x25519.getPublicKey(esk)), v.ephemeralPublicHex);
  assertEquals(
    toHex(concatBytes(lengthPrefixed(v.roomId), u32(v.epoch), roomKey)),
    v.sealedPlaintextHex,
  );
  const envelope = sealRoomKey({
    roomId: v.roomId,
    epoch: v.epoch,
    roomKey,
    memberSignPub: member.signPub,
    memberKexPub: member.kexPub,
    admin: admin.signer,
    ephemeralSecret: esk,
  });
  assertEquals(toHex(envelope), v.envelopeHex);
  assertEquals(v.envelopeHex, v.sealedHex + v.signatureHex);
  assertEquals(v.sealedHex.slice(0, 64), v.ephemeralPublicHex, "a sealed box starts with epk");
  assertEquals(
    v.signedMessageHex,
    toHex(concatBytes(
      utf8("unibus/room-key/v1"),
      lengthPrefixed(v.roomId),
      u32(v.epoch),
      member.signPub,
      fromHex(v.sealedHex),
    )),
  );
  assert(verifySignature(admin.signPub, fromHex(v.signedMessageHex), fromHex(v.signatureHex)));
  // The caller's ephemeral key is used, not consumed.
  assertEquals(toHex(esk), v.ephemeralSecretHex);
  const opened = openRoomKey({
    envelope: fromHex(v.envelopeHex),
    roomId: v.roomId,
    epoch: v.epoch,
    adminSignPub: admin.signPub,
    me: member,
  });
  assertEquals(toHex(opened), v.roomKeyHex);
});

Deno.test("vectors: HKDF gives CK_0 and each HKDF step gives MK_n || CK_n+1", () => {
  const v = vectors.chain;
  const sender = ids[v.sender];
  assertEquals(sender.signPubHex, v.senderHex);
  const id = {
    roomId: v.roomId,
    epoch: v.epoch,
    sender: sender.signPub,
    session: fromHex(v.sessionHex),
  };
  assertEquals(
    toHex(concatBytes(
      utf8("unibus/chain/v2"),
      lengthPrefixed(v.roomId),
      u32(v.epoch),
      id.sender,
      id.session,
    )),
    v.hkdfInfoHex,
  );
  // RFC 5869 by hand: PRK = HMAC(salt, IKM); OKM = T(1) = HMAC(PRK, info || 0x01).
  const prk = hmac(sha256, fromHex(v.hkdfSaltHex), fromHex(v.roomKeyHex));
  assertEquals(toHex(prk), v.prkHex);
  const t1 = hmac(sha256, prk, concatBytes(fromHex(v.hkdfInfoHex), Uint8Array.of(1)));
  assertEquals(toHex(t1), v.chainKeysHex[0]);
  assertEquals(toHex(initialChainKey(fromHex(v.roomKeyHex), id)), v.chainKeysHex[0]);
  // A step by hand: PRK = HMAC(zeros, CK_n); T(1) = HMAC(PRK, info || 1) is
  // MK_n, T(2) = HMAC(PRK, T(1) || info || 2) is CK_n+1.
  const stepInfo = utf8("unibus/step/v2");
  for (let i = 0; i < v.messageKeysHex.length; i++) {
    const p = hmac(sha256, new Uint8Array(32), fromHex(v.chainKeysHex[i]));
    const mk = hmac(sha256, p, concatBytes(stepInfo, Uint8Array.of(1)));
    const next = hmac(sha256, p, concatBytes(mk, stepInfo, Uint8Array.of(2)));
    assertEquals(toHex(mk), v.messageKeysHex[i], `MK_${i}`);
    assertEquals(toHex(next), v.chainKeysHex[i + 1], `CK_${i + 1}`);
  }
  const chain = new Chain(fromHex(v.chainKeysHex[0]));
  for (const [i, mk] of v.messageKeysHex.entries()) {
    assertEquals(toHex(chain.next()), mk, `MK_${i}`);
  }
  // A chain started from a later chain key continues the same sequence.
  assertEquals(toHex(new Chain(fromHex(v.chainKeysHex[2]), 2).keyFor(2)), v.messageKeysHex[2]);
});

Deno.test("vectors: the encrypted packet re-encodes byte for byte, decodes and decrypts", () => {
  const v = vectors.packets.find((p) => p.name === "encrypted-two-frames")!;
  const sender = ids[v.sender];
  const session = fromHex(v.sessionHex);
  const mk = fromHex(vectors.chain.messageKeysHex[v.index]);
  assertEquals(toHex(mk), v.messageKeyHex);
  const bytes = encodePacket(
    { roomId: v.roomId, epoch: v.epoch, session, signer: sender.signer, encrypted: true },
    { index: v.index, firstFrame: v.firstFrame, key: mk },
    v.framesUtf8.map(utf8),
    fromHex(v.nonceHex!),
  );
  assertEquals(toHex(bytes), v.packetHex);
  assertEquals(toHex(bytes.subarray(0, HEADER_BYTES)), v.headerHex);
  assertEquals(v.packetHex.slice(-128), v.signatureHex);
  assertEquals(
    v.signedPrefixHex,
    toHex(concatBytes(utf8("unibus/packet/v2"), lengthPrefixed(v.roomId))),
  );
  // The signature covers context || lp(room) || SHA-256(packet up to it).
  const digest = sha256(bytes.subarray(0, bytes.length - 64));
  assertEquals(toHex(digest), v.digestHex);
  assertEquals(toHex(concatBytes(fromHex(v.signedPrefixHex), digest)), v.signedMessageHex);
  assert(verifySignature(sender.signPub, fromHex(v.signedMessageHex!), fromHex(v.signatureHex)));
  // The body is one AEAD over the frames, bound to the header.
  assertEquals(
    v.aadHex,
    toHex(concatBytes(utf8("unibus/body/v2"), lengthPrefixed(v.roomId), fromHex(v.headerHex!))),
  );
  const framesPlain = aeadDecrypt(
    mk,
    fromHex(v.nonceHex!),
    fromHex(v.bodyHex!),
    fromHex(v.aadHex!),
  );
  assertEquals(toHex(framesPlain!), v.framesPlainHex);

  const p = decodePacket(v.roomId, fromHex(v.packetHex));
  assertEquals([p.encrypted, p.epoch, p.index, p.firstFrame, p.count], [
    true,
    v.epoch,
    v.index,
    v.firstFrame,
    v.framesUtf8.length,
  ]);
  assertEquals(toHex(p.sender), sender.signPubHex);
  assertEquals(toHex(p.session), v.sessionHex);
  const chain = new Chain(
    initialChainKey(fromHex(vectors.roomKey.roomKeyHex), {
      roomId: v.roomId,
      epoch: p.epoch,
      sender: p.sender,
      session: p.session,
    }),
  );
  const frames = openPacket(v.roomId, p, chain.keyFor(p.index));
  assertEquals(frames?.map((f) => new TextDecoder().decode(f)), v.framesUtf8);
});

Deno.test("vectors: the sign-only packet re-encodes byte for byte with flag 0 and a zero nonce", () => {
  const v = vectors.packets.find((p) => p.name === "sign-only-one-frame")!;
  const sender = ids[v.sender];
  const bytes = encodePacket(
    {
      roomId: v.roomId,
      epoch: v.epoch,
      session: fromHex(v.sessionHex),
      signer: sender.signer,
      encrypted: false,
    },
    { index: v.index, firstFrame: v.firstFrame, key: null },
    v.framesUtf8.map(utf8),
  );
  assertEquals(toHex(bytes), v.packetHex);
  assertEquals(bytes[4], 0, "flag bit 0 clear");
  const p = decodePacket(v.roomId, bytes);
  assertEquals(p.encrypted, false);
  assertEquals(toHex(p.nonce), "00".repeat(12));
  assertEquals(
    openPacket(v.roomId, p, null)?.map((f) => new TextDecoder().decode(f)),
    v.framesUtf8,
  );
});

Deno.test("vectors: a v1 packet is refused by its version, not parsed", () => {
  assertThrows(
    () => decodePacket(vectors.room.id, fromHex(vectors.oldVersionPacketHex)),
    PacketVersionError,
    "packet format v1 is not supported",
  );
});

Deno.test("vectors: a timed packet signs its send time into an 88-byte header the body is bound to", () => {
  const v = vectors.timedPacket;
  const sender = ids[v.sender];
  const session = fromHex(v.sessionHex);
  const mk = fromHex(vectors.chain.messageKeysHex[v.index]);
  assertEquals(toHex(mk), v.messageKeyHex);
  const bytes = encodePacket(
    {
      roomId: v.roomId,
      epoch: v.epoch,
      session,
      signer: sender.signer,
      encrypted: true,
      sentAt: v.sentAtMs,
    },
    { index: v.index, firstFrame: v.firstFrame, key: mk },
    v.framesUtf8.map(utf8),
    fromHex(v.nonceHex),
  );
  assertEquals(toHex(bytes), v.packetHex);
  // Flags: bit 0 encrypted, bit 1 timed; the time is a u64 right after the 80 bytes.
  assertEquals(bytes[4], 3);
  assertEquals(toHex(bytes.subarray(0, HEADER_BYTES + 8)), v.headerHex);
  assertEquals(
    Number(new DataView(bytes.buffer, bytes.byteOffset + HEADER_BYTES, 8).getBigUint64(0)),
    v.sentAtMs,
  );
  assertEquals(
    v.aadHex,
    toHex(concatBytes(utf8("unibus/body/v2"), lengthPrefixed(v.roomId), fromHex(v.headerHex))),
  );
  const p = decodePacket(v.roomId, bytes);
  assertEquals([p.sentAt, p.index, p.firstFrame], [v.sentAtMs, v.index, v.firstFrame]);
  assertEquals(openPacket(v.roomId, p, mk)?.map((f) => new TextDecoder().decode(f)), v.framesUtf8);
  // The time is signed: another time in the same bytes no longer verifies.
  const moved = bytes.slice();
  moved[HEADER_BYTES + 7] ^= 1;
  assertThrows(() => decodePacket(v.roomId, moved), PacketError, "signature");
});

Deno.test("vectors: a reply's session comes from the request's sender, session, epoch and frame index; the reply is packet 0, frame 0", () => {
  const v = vectors.reply;
  const req = vectors.timedPacket;
  const requester = ids[v.requester];
  const replier = ids[v.replier];
  assertEquals(
    v.replySessionInputHex,
    toHex(concatBytes(
      utf8("unibus/reply/v1"),
      requester.signPub,
      fromHex(req.sessionHex),
      u32(req.epoch),
      u32(req.firstFrame),
    )),
  );
  assertEquals(toHex(sha256(fromHex(v.replySessionInputHex)).subarray(0, 16)), v.replySessionHex);
  const session = replySessionFor(
    requester.signPub,
    fromHex(req.sessionHex),
    req.epoch,
    req.firstFrame,
  );
  assertEquals(toHex(session), v.replySessionHex);
  const ck0 = initialChainKey(fromHex(vectors.roomKey.roomKeyHex), {
    roomId: vectors.room.id,
    epoch: v.epoch,
    sender: replier.signPub,
    session,
  });
  assertEquals(toHex(ck0), v.chainKey0Hex);
  const mk0 = new Chain(ck0).next();
  assertEquals(toHex(mk0), v.messageKeyHex);
  const bytes = encodePacket(
    {
      roomId: vectors.room.id,
      epoch: v.epoch,
      session,
      signer: replier.signer,
      encrypted: true,
      sentAt: v.sentAtMs,
    },
    { index: 0, firstFrame: 0, key: mk0 },
    [utf8(v.frameUtf8)],
    fromHex(v.nonceHex),
  );
  assertEquals(toHex(bytes), v.packetHex);
  const p = decodePacket(vectors.room.id, bytes);
  assertEquals([toHex(p.sender), toHex(p.session), p.index, p.firstFrame, p.count], [
    replier.signPubHex,
    v.replySessionHex,
    0,
    0,
    1,
  ]);
});

Deno.test("vectors: a creation naming two members besides its creator is one change at epoch 0", () => {
  const v = vectors.membershipCreateMany;
  assertEquals(v.changes.length, 1);
  assertEquals(v.changes[0].text.split("\n")[0], "unibus/membership/v2");
  assertEquals(v.changes[0].text.split("\n").filter((l) => l.startsWith("add: ")).length, 2);
  checkMembershipVectors(v);
  assertEquals([v.final.epoch, v.final.members.length], [0, 3]);
});

Deno.test("vectors: every log breaking a rule of several members in a change is refused", () => {
  assertEquals(vectors.membershipRefused.map((r) => r.name), [
    "add-names-a-member-already-in",
    "add-names-one-member-twice",
    "create-names-its-creator-again",
    "add-lines-out-of-order",
    "add-with-one-add-line",
  ]);
  for (const r of vectors.membershipRefused) {
    const changes = r.changes.map((c) => ({ text: c.text, sig: c.sigBase64 }));
    // Each change is validly signed: the rule alone refuses it.
    for (const c of changes) {
      const by = /^by: ([0-9a-f]{64})$/m.exec(c.text)![1];
      const sig = Uint8Array.from(atob(c.sig), (ch) => ch.charCodeAt(0));
      assert(verifySignature(fromHex(by), utf8(c.text), sig), r.name);
    }
    try {
      verifyLog(vectors.room.id, changes);
      throw new Error(`${r.name}: the log verified`);
    } catch (err) {
      assert(err instanceof MembershipError, `${r.name}: ${err}`);
    }
    // Everything before the offending change verifies.
    if (changes.length > 1) verifyLog(vectors.room.id, changes.slice(0, -1));
  }
});
