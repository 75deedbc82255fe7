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
  parseChange,
  signChange,
  verifyLog,
} from "../lib/e2e/membership.ts";
import { openRoomKey, sealRoomKey } from "../lib/e2e/room_key.ts";
import { Chain, initialChainKey } from "../lib/e2e/ratchet.ts";
import { decodePacket, encodePacket, frameAad } from "../lib/e2e/packet.ts";
import { aeadDecrypt } from "../lib/e2e/aead.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

interface IdentityVector {
  signSeedHex: string;
  kexPrivHex: string;
  signPubHex: string;
  kexPubHex: string;
  kexBindingMessageUtf8: string;
  kexSigHex: string;
}
interface FrameVector {
  index: number;
  nonceHex: string;
  plaintextUtf8: string;
  messageKeyHex?: string;
  aadHex?: string;
  bodyHex?: string;
}
interface PacketVector {
  name: string;
  roomId: string;
  encrypted: boolean;
  sender: "alice" | "bob" | "carol";
  epoch: number;
  sessionHex: string;
  frames: FrameVector[];
  signedPrefixHex: string;
  signatureHex: string;
  packetHex: string;
}
interface Vectors {
  identities: Record<"alice" | "bob" | "carol", IdentityVector>;
  room: {
    id: string;
    subject: string;
    policy: { encrypt: boolean; sign: boolean; persist: boolean };
  };
  membership: {
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
  };
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

Deno.test("vectors: membership texts, signatures and hashes recompute and the log verifies", () => {
  const changes = vectors.membership.changes;
  assertEquals(changes.map((c) => c.body.op), ["create", "add", "add", "remove"]);
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
  const f = vectors.membership.final;
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

Deno.test("vectors: HKDF gives CK_0 and the HMAC chain gives CK_1..3 and MK_0..2", () => {
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
      utf8("unibus/chain/v1"),
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
  for (let i = 1; i < v.chainKeysHex.length; i++) {
    const next = hmac(sha256, fromHex(v.chainKeysHex[i - 1]), Uint8Array.of(2));
    assertEquals(toHex(next), v.chainKeysHex[i], `CK_${i}`);
  }
  const chain = new Chain(fromHex(v.chainKeysHex[0]));
  for (const [i, mk] of v.messageKeysHex.entries()) {
    assertEquals(toHex(hmac(sha256, fromHex(v.chainKeysHex[i]), Uint8Array.of(1))), mk);
    assertEquals(toHex(chain.next()), mk, `MK_${i}`);
  }
  // A chain started from a later chain key continues the same sequence.
  assertEquals(toHex(new Chain(fromHex(v.chainKeysHex[2]), 2).keyFor(2)), v.messageKeysHex[2]);
});

Deno.test("vectors: the encrypted packet re-encodes byte for byte, decodes and decrypts", () => {
  const v = vectors.packets.find((p) => p.name === "encrypted-two-frames")!;
  const sender = ids[v.sender];
  const session = fromHex(v.sessionHex);
  const mks = vectors.chain.messageKeysHex.map((h) => fromHex(h));
  const bytes = encodePacket(
    { roomId: v.roomId, epoch: v.epoch, session, signer: sender.signer, encrypted: true },
    v.frames.map((f) => ({ index: f.index, key: mks[f.index], plaintext: utf8(f.plaintextUtf8) })),
    v.frames.map((f) => fromHex(f.nonceHex)),
  );
  assertEquals(toHex(bytes), v.packetHex);
  assertEquals(v.packetHex.slice(-128), v.signatureHex);
  assertEquals(
    v.signedPrefixHex,
    toHex(concatBytes(utf8("unibus/packet/v1"), lengthPrefixed(v.roomId))),
  );
  assert(verifySignature(
    sender.signPub,
    concatBytes(fromHex(v.signedPrefixHex), bytes.subarray(0, bytes.length - 64)),
    fromHex(v.signatureHex),
  ));

  const p = decodePacket(v.roomId, fromHex(v.packetHex));
  assertEquals([p.encrypted, p.epoch], [true, v.epoch]);
  assertEquals(toHex(p.sender), sender.signPubHex);
  assertEquals(toHex(p.session), v.sessionHex);
  assertEquals(p.frames.length, v.frames.length);
  const chain = new Chain(
    initialChainKey(fromHex(vectors.roomKey.roomKeyHex), {
      roomId: v.roomId,
      epoch: p.epoch,
      sender: p.sender,
      session: p.session,
    }),
  );
  for (const [i, f] of p.frames.entries()) {
    const fv = v.frames[i];
    assertEquals([f.index, toHex(f.nonce), toHex(f.body)], [fv.index, fv.nonceHex, fv.bodyHex!]);
    const mk = chain.keyFor(f.index);
    assertEquals(toHex(mk), fv.messageKeyHex);
    const aad = frameAad(v.roomId, p.epoch, p.sender, p.session, f.index);
    assertEquals(toHex(aad), fv.aadHex);
    const pt = aeadDecrypt(mk, f.nonce, f.body, aad);
    assert(pt !== null, `frame ${i} decrypts`);
    assertEquals(new TextDecoder().decode(pt), fv.plaintextUtf8);
  }
});

Deno.test("vectors: the sign-only packet re-encodes byte for byte with flag 0 and zero nonces", () => {
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
    v.frames.map((f) => ({ index: f.index, key: null, plaintext: utf8(f.plaintextUtf8) })),
  );
  assertEquals(toHex(bytes), v.packetHex);
  assertEquals(bytes[4], 0, "flag bit 0 clear");
  const p = decodePacket(v.roomId, bytes);
  assertEquals(p.encrypted, false);
  assertEquals(toHex(p.frames[0].nonce), "00".repeat(12));
  assertEquals(new TextDecoder().decode(p.frames[0].body), v.frames[0].plaintextUtf8);
});
