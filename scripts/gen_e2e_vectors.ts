/**
 * Writes tests/fixtures/e2e_vectors.json: deterministic test vectors for the
 * end-to-end formats of docs/protocol.md §2 (kex binding, membership log,
 * sealed room key envelope, sender chain, packets).
 *
 * Run manually, never from CI or the test suite:
 *
 *   deno run --allow-write=tests/fixtures scripts/gen_e2e_vectors.ts
 *
 * The vectors are normative once committed: regenerating them must produce
 * the same bytes (tests/e2e_vectors_test.ts recomputes every value from the
 * inputs and tests/e2e_interop_test.ts recomputes them with libsodium). Only
 * run this after a deliberate, versioned format change, and update the worked
 * examples in docs/protocol.md to match.
 *
 * Every input is fixed: Ed25519 seeds are RFC 8032 §7.1 TESTs 1-3, X25519
 * private keys of Alice and Bob are RFC 7748 §6.1's, and the ephemeral sealed
 * box key and the AEAD nonces (random in real use) are given explicitly.
 *
 * @module
 */

import { hmac } from "@noble/hashes/hmac.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { blake2b } from "@noble/hashes/blake2.js";
import { x25519 } from "@noble/curves/ed25519.js";
import { Identity, kexBindingMessage } from "../lib/identity/identity.ts";
import { concatBytes, fromHex, lengthPrefixed, toHex, u32, utf8 } from "../lib/e2e/bytes.ts";
import {
  type ChangeBody,
  changeHash,
  type RoomPolicy,
  signChange,
  type SignedChange,
  verifyLog,
} from "../lib/e2e/membership.ts";
import { sealRoomKey } from "../lib/e2e/room_key.ts";
import { Chain, initialChainKey } from "../lib/e2e/ratchet.ts";
import { bodyAad, encodePacket, HEADER_BYTES, packetSignedMessage } from "../lib/e2e/packet.ts";

/** Fixed inputs; the test reads them back from the JSON, not from here. */
export const INPUTS = {
  alice: {
    signSeedHex: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    kexPrivHex: "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
  },
  bob: {
    signSeedHex: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    kexPrivHex: "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
  },
  carol: {
    signSeedHex: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
    kexPrivHex: "0303030303030303030303030303030303030303030303030303030303030303",
  },
  roomId: "6f1c2e0a9b3d47e58c1f2a3b4c5d6e7f",
  subject: "chat.ops",
  policy: { encrypt: true, sign: true, persist: true } as RoomPolicy,
  firstAt: 1700000000000,
  roomKeyHex: "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf",
  ephemeralSecretHex: "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
  sessionHex: "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
  /** Packet 1 of Bob's session (packet 0 went before), frames 5 and 6. */
  packet: {
    index: 1,
    firstFrame: 5,
    nonceHex: "000102030405060708090a0b",
    framesUtf8: ["hello, room", "second frame"],
  },
  signOnly: { index: 0, firstFrame: 0, framesUtf8: ["signed, not secret"] },
};

// The encrypted two-frame packet of the v1 vectors (format "UBP1", before
// this version): kept so every implementation checks that it refuses an old
// peer's packet by its version instead of misreading it.
const OLD_V1_PACKET_HEX =
  "55425031010000023d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c00000003" +
  "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff00000000000102030405060708090a0b0000001bea6fe2b02ccfd239" +
  "861c3f51303ad495af609cd9fb2019a2c76502000000010c0d0e0f10111213141516170000001cbe87fa7a31" +
  "e2d7fd94efe46b25b574bfdee217eda7ac87a9df12ef95d4e8b404d6922e19bbf6de8ee3be461c6d26c81c9a" +
  "2ec9879a647a6a8cd0362723e3748dd9e57a8a2ec01000ca7be1329a99fc8d40b7f5ed4fbbeac0beebd10f";

function identity(x: { signSeedHex: string; kexPrivHex: string }): Identity {
  return new Identity(fromHex(x.signSeedHex), fromHex(x.kexPrivHex));
}

function identityVector(id: Identity, x: { signSeedHex: string; kexPrivHex: string }) {
  return {
    ...x,
    signPubHex: id.signPubHex,
    kexPubHex: id.kexPubHex,
    kexBindingMessageUtf8: new TextDecoder().decode(
      kexBindingMessage(id.signPubHex, id.kexPubHex),
    ),
    kexSigHex: id.kexSigHex,
  };
}

/**
 * Builds every vector from {@linkcode INPUTS}.
 *
 * @example
 * ```ts
 * const v = buildVectors();
 * v.chain.messageKeysHex[0]; // MK_0 of Bob's session
 * ```
 */
export function buildVectors() {
  const alice = identity(INPUTS.alice);
  const bob = identity(INPUTS.bob);
  const carol = identity(INPUTS.carol);
  const room = INPUTS.roomId;

  // Membership: create (Alice) → add Bob → add Carol → remove Carol. Four
  // changes, four epochs; Bob's packets below are for the last one, where the
  // members are Alice and Bob.
  const bodies: ChangeBody[] = [];
  const changes: SignedChange[] = [];
  const push = (b: Omit<ChangeBody, "room" | "seq" | "prev" | "epoch" | "by" | "at">) => {
    const seq = changes.length;
    const body: ChangeBody = {
      room,
      seq,
      prev: seq === 0 ? "0".repeat(64) : changeHash(changes[seq - 1]),
      epoch: seq,
      by: alice.signPubHex,
      at: INPUTS.firstAt + seq * 1000,
      ...b,
    };
    bodies.push(body);
    changes.push(signChange(body, alice.signer));
  };
  const adds = (id: Identity, role: "admin" | "member") => ({
    member: id.signPubHex,
    kex: id.kexPubHex,
    kexSig: id.kexSigHex,
    role,
  });
  push({ op: "create", subject: INPUTS.subject, policy: INPUTS.policy, ...adds(alice, "admin") });
  push({ op: "add", ...adds(bob, "member") });
  push({ op: "add", ...adds(carol, "member") });
  push({ op: "remove", member: carol.signPubHex });
  const state = verifyLog(room, changes);
  const epoch = state.epoch;

  // Sealed room key for Bob at the last epoch, generated and signed by Alice.
  const roomKey = fromHex(INPUTS.roomKeyHex);
  const esk = fromHex(INPUTS.ephemeralSecretHex);
  const envelope = sealRoomKey({
    roomId: room,
    epoch,
    roomKey,
    memberSignPub: bob.signPub,
    memberKexPub: bob.kexPub,
    admin: alice.signer,
    ephemeralSecret: esk,
  });
  const sealed = envelope.subarray(0, envelope.length - 64);
  const epk = x25519.getPublicKey(esk);
  const sealedPlaintext = concatBytes(lengthPrefixed(room), u32(epoch), roomKey);
  const envelopeSigned = concatBytes(
    utf8("unibus/room-key/v1"),
    lengthPrefixed(room),
    u32(epoch),
    bob.signPub,
    sealed,
  );

  // Bob's chain for one session of that epoch, with the HKDF steps spelled out.
  const session = fromHex(INPUTS.sessionHex);
  const chainId = { roomId: room, epoch, sender: bob.signPub, session };
  const salt = new Uint8Array(32);
  const info = concatBytes(
    utf8("unibus/chain/v2"),
    lengthPrefixed(room),
    u32(epoch),
    bob.signPub,
    session,
  );
  const prk = hmac(sha256, salt, roomKey);
  const ck0 = initialChainKey(roomKey, chainId);
  // Each step is HKDF-SHA-256(ikm = CK_n, zero salt, "unibus/step/v2", 64):
  // MK_n is the first half, CK_n+1 the second (computed with @noble here,
  // independently of lib/e2e/ratchet.ts's node:crypto).
  const stepInfo = utf8("unibus/step/v2");
  const cks = [ck0];
  const mks: Uint8Array[] = [];
  for (let i = 0; i < 3; i++) {
    const okm = hkdf(sha256, cks[i], salt, stepInfo, 64);
    mks.push(okm.slice(0, 32));
    cks.push(okm.slice(32));
  }
  const chain = new Chain(ck0);
  const chainMks = [chain.next(), chain.next(), chain.next()];
  if (chainMks.some((mk, i) => toHex(mk) !== toHex(mks[i]))) {
    throw new Error("lib/e2e/ratchet.ts disagrees with HKDF spelled out");
  }

  // Packet 1 of Bob's session: two encrypted frames under MK_1.
  const ctx = { roomId: room, epoch, session, signer: bob.signer, encrypted: true };
  const P = INPUTS.packet;
  const plainFrames = P.framesUtf8.map(utf8);
  const packet = encodePacket(
    ctx,
    { index: P.index, firstFrame: P.firstFrame, key: mks[P.index] },
    plainFrames,
    fromHex(P.nonceHex),
  );
  const header = packet.subarray(0, HEADER_BYTES);
  const framesPlain = concatBytes(
    ...plainFrames.flatMap((f) => [u32(f.length), f]),
  );
  const signedPrefix = concatBytes(utf8("unibus/packet/v2"), lengthPrefixed(room));
  const unsigned = packet.subarray(0, packet.length - 64);

  // A sign-only packet (flag bit 0 clear): plaintext frames, zero nonce.
  const S = INPUTS.signOnly;
  const plainPacket = encodePacket(
    { ...ctx, encrypted: false },
    { index: S.index, firstFrame: S.firstFrame, key: null },
    S.framesUtf8.map(utf8),
  );

  const members = (m: Map<string, { signPub: string; kexPub: string; role: string }>) =>
    [...m.values()].map((v) => ({ signPubHex: v.signPub, kexPubHex: v.kexPub, role: v.role }));

  return {
    description:
      "End-to-end test vectors (docs/protocol.md section 2). Generated by scripts/gen_e2e_vectors.ts from fixed inputs; " +
      "tests/e2e_vectors_test.ts recomputes every value and tests/e2e_interop_test.ts recomputes them with libsodium. " +
      "Ed25519 seeds are RFC 8032 7.1 TESTs 1-3; Alice's and Bob's X25519 keys are RFC 7748 6.1's. " +
      "The sealed box ephemeral key and the AEAD nonces are random in real use and fixed here.",
    identities: {
      alice: identityVector(alice, INPUTS.alice),
      bob: identityVector(bob, INPUTS.bob),
      carol: identityVector(carol, INPUTS.carol),
    },
    room: { id: room, subject: INPUTS.subject, policy: INPUTS.policy },
    membership: {
      changes: changes.map((c, i) => ({
        body: bodies[i],
        text: c.text,
        sigBase64: c.sig,
        sigHex: toHex(Uint8Array.from(atob(c.sig), (ch) => ch.charCodeAt(0))),
        hashHex: changeHash(c),
      })),
      final: {
        epoch: state.epoch,
        seq: state.seq,
        headHex: state.head,
        members: members(state.members),
        epochs: Object.fromEntries([...state.epochs].map(([e, m]) => [String(e), members(m)])),
      },
    },
    roomKey: {
      roomId: room,
      epoch,
      roomKeyHex: INPUTS.roomKeyHex,
      admin: "alice",
      member: "bob",
      ephemeralSecretHex: INPUTS.ephemeralSecretHex,
      ephemeralPublicHex: toHex(epk),
      sealedPlaintextHex: toHex(sealedPlaintext),
      sealNonceHex: toHex(blake2b(concatBytes(epk, bob.kexPub), { dkLen: 24 })),
      sealedHex: toHex(sealed),
      signedMessageHex: toHex(envelopeSigned),
      signatureHex: toHex(envelope.subarray(envelope.length - 64)),
      envelopeHex: toHex(envelope),
    },
    chain: {
      roomId: room,
      epoch,
      sender: "bob",
      senderHex: bob.signPubHex,
      sessionHex: INPUTS.sessionHex,
      roomKeyHex: INPUTS.roomKeyHex,
      hkdfSaltHex: toHex(salt),
      hkdfInfoHex: toHex(info),
      prkHex: toHex(prk),
      chainKeysHex: cks.map(toHex),
      messageKeysHex: mks.map(toHex),
    },
    packets: [
      {
        name: "encrypted-two-frames",
        roomId: room,
        encrypted: true,
        sender: "bob",
        epoch,
        sessionHex: INPUTS.sessionHex,
        index: P.index,
        firstFrame: P.firstFrame,
        framesUtf8: P.framesUtf8,
        nonceHex: P.nonceHex,
        messageKeyHex: toHex(mks[P.index]),
        headerHex: toHex(header),
        framesPlainHex: toHex(framesPlain),
        aadHex: toHex(bodyAad(room, header)),
        bodyHex: toHex(packet.subarray(HEADER_BYTES, packet.length - 64)),
        signedPrefixHex: toHex(signedPrefix),
        digestHex: toHex(sha256(unsigned)),
        signedMessageHex: toHex(packetSignedMessage(room, unsigned)),
        signatureHex: toHex(packet.subarray(packet.length - 64)),
        packetHex: toHex(packet),
      },
      {
        name: "sign-only-one-frame",
        roomId: room,
        encrypted: false,
        sender: "bob",
        epoch,
        sessionHex: INPUTS.sessionHex,
        index: S.index,
        firstFrame: S.firstFrame,
        framesUtf8: S.framesUtf8,
        nonceHex: "00".repeat(12),
        signedPrefixHex: toHex(signedPrefix),
        digestHex: toHex(sha256(plainPacket.subarray(0, plainPacket.length - 64))),
        signatureHex: toHex(plainPacket.subarray(plainPacket.length - 64)),
        packetHex: toHex(plainPacket),
      },
    ],
    /** A v1 packet (the first vector of the previous format) a v2 receiver must refuse by version. */
    oldVersionPacketHex: OLD_V1_PACKET_HEX,
  };
}

if (import.meta.main) {
  const out = new URL("../tests/fixtures/e2e_vectors.json", import.meta.url);
  await Deno.writeTextFile(out, JSON.stringify(buildVectors(), null, 2) + "\n");
  console.log(`wrote ${out.pathname}`);
}
