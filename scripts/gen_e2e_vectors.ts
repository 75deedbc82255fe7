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
  parseChange,
  type RoomPolicy,
  type RoomState,
  signChange,
  type SignedChange,
  verifyLog,
} from "../lib/e2e/membership.ts";
import { sealRoomKey } from "../lib/e2e/room_key.ts";
import { Chain, initialChainKey } from "../lib/e2e/ratchet.ts";
import {
  bodyAad,
  encodePacket,
  HEADER_BYTES,
  packetSignedMessage,
  replySessionFor,
} from "../lib/e2e/packet.ts";
import { toBase64 } from "../lib/e2e/bytes.ts";
import { MembershipError } from "../lib/e2e/membership.ts";

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
  /** Packet 2 of Bob's session, timed (every live packet is): one frame, a request. */
  timed: {
    index: 2,
    firstFrame: 7,
    sentAt: 1700000005000,
    nonceHex: "101112131415161718191a1b",
    framesUtf8: ["status?"],
  },
  /** Alice's reply to that request: packet 0, frame 0 of the reply session. */
  reply: { sentAt: 1700000005100, nonceHex: "202122232425262728292a2b", frameUtf8: "all green" },
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

function members(m: Map<string, { signPub: string; kexPub: string; role: string }>) {
  return [...m.values()].map((v) => ({ signPubHex: v.signPub, kexPubHex: v.kexPub, role: v.role }));
}

/** A membership log's vector: each change's body, text, signature and hash, and the state. */
function logVector(bodies: ChangeBody[], changes: SignedChange[], state: RoomState) {
  return {
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

  // A membership log signed by Alice: each change follows the previous one,
  // one epoch and one second apart. A bulk body is kept as its text parses
  // back (its members in canonical order).
  const logOf = () => {
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
      const change = signChange(body, alice.signer);
      changes.push(change);
      // A refused vector's change may not parse back; its log is checked
      // by verifyLog below either way.
      let kept = body;
      if (body.adds) {
        try {
          kept = parseChange(change.text);
        } catch { /* kept as written */ }
      }
      bodies.push(kept);
    };
    return { bodies, changes, push };
  };
  const adds = (id: Identity, role: "admin" | "member") => ({
    member: id.signPubHex,
    kex: id.kexPubHex,
    kexSig: id.kexSigHex,
    role,
  });

  // Membership: create (Alice) → add Bob → add Carol → remove Carol. Four
  // changes, four epochs; Bob's packets below are for the last one, where the
  // members are Alice and Bob.
  const { bodies, changes, push } = logOf();
  push({ op: "create", subject: INPUTS.subject, policy: INPUTS.policy, ...adds(alice, "admin") });
  push({ op: "add", ...adds(bob, "member") });
  push({ op: "add", ...adds(carol, "member") });
  push({ op: "remove", member: carol.signPubHex });
  const state = verifyLog(room, changes);
  const epoch = state.epoch;

  // Membership in bulk (§2.4, header v2), a log of its own: create (Alice,
  // naming Bob as well) → remove Bob → add Bob and Carol in one change.
  const { bodies: bulkBodies, changes: bulk, push: pushBulk } = logOf();
  const entry = (id: Identity, role: "admin" | "member") => {
    const { member, kex, kexSig } = adds(id, role);
    return { member, kex, kexSig, role };
  };
  pushBulk({
    op: "create",
    subject: INPUTS.subject,
    policy: INPUTS.policy,
    ...adds(alice, "admin"),
    adds: [entry(bob, "member")],
  });
  pushBulk({ op: "remove", member: bob.signPubHex });
  pushBulk({ op: "add", adds: [entry(carol, "admin"), entry(bob, "member")] });
  const bulkState = verifyLog(room, bulk);

  // A creation naming two members besides its creator: one change, epoch 0.
  const { bodies: createBodies, changes: createMany, push: pushCreateMany } = logOf();
  pushCreateMany({
    op: "create",
    subject: INPUTS.subject,
    policy: INPUTS.policy,
    ...adds(alice, "admin"),
    adds: [entry(carol, "member"), entry(bob, "admin")],
  });
  const createManyState = verifyLog(room, createMany);

  // Logs a verifier must refuse, each for one rule of several members in a
  // change (§2.4); every change is validly signed, so only the rule stops it.
  const resigned = (text: string): SignedChange => ({
    text,
    sig: toBase64(alice.signer.sign(utf8(text))),
  });
  const refused = (
    name: string,
    rule: string,
    build: (l: ReturnType<typeof logOf>) => void,
  ) => {
    const l = logOf();
    build(l);
    try {
      verifyLog(room, l.changes);
    } catch (err) {
      if (!(err instanceof MembershipError)) throw err;
      return { name, rule, changes: l.changes.map((c) => ({ text: c.text, sigBase64: c.sig })) };
    }
    throw new Error(`the refused log ${name} verified`);
  };
  const createAlone = { op: "create" as const, subject: INPUTS.subject, policy: INPUTS.policy };
  const membershipRefused = [
    refused("add-names-a-member-already-in", "none may be a member already (rule 7)", (l) => {
      l.push({ ...createAlone, ...adds(alice, "admin"), adds: [entry(bob, "member")] });
      l.push({ op: "add", adds: [entry(bob, "member"), entry(carol, "member")] });
    }),
    refused("add-names-one-member-twice", "each member once", (l) => {
      l.push({ ...createAlone, ...adds(alice, "admin") });
      l.push({ op: "add", adds: [entry(carol, "member"), entry(carol, "admin")] });
    }),
    refused("create-names-its-creator-again", "the creator may not add itself again", (l) => {
      l.push({ ...createAlone, ...adds(alice, "admin"), adds: [entry(alice, "member")] });
    }),
    refused("add-lines-out-of-order", "add lines in ascending order of the key", (l) => {
      l.push({ ...createAlone, ...adds(alice, "admin") });
      l.push({ op: "add", adds: [entry(bob, "member"), entry(carol, "member")] });
      const lines = l.changes[1].text.split("\n");
      const at = lines.findIndex((x) => x.startsWith("add: "));
      [lines[at], lines[at + 1]] = [lines[at + 1], lines[at]];
      l.changes[1] = resigned(lines.join("\n"));
    }),
    refused("add-with-one-add-line", "a v2 add names at least 2 members", (l) => {
      l.push({ ...createAlone, ...adds(alice, "admin") });
      l.push({ op: "add", adds: [entry(bob, "member"), entry(carol, "member")] });
      const lines = l.changes[1].text.split("\n");
      const at = lines.findIndex((x) => x.startsWith("add: "));
      lines.splice(at + 1, 1);
      l.changes[1] = resigned(lines.join("\n"));
    }),
  ];

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

  // A timed packet of Bob's session (every live packet is timed): packet 2,
  // one frame at index 7, sent as a request. Its header is 88 bytes.
  const T = INPUTS.timed;
  const timedPacket = encodePacket(
    { ...ctx, sentAt: T.sentAt },
    { index: T.index, firstFrame: T.firstFrame, key: mks[T.index] },
    T.framesUtf8.map(utf8),
    fromHex(T.nonceHex),
  );
  const timedHeader = timedPacket.subarray(0, HEADER_BYTES + 8);

  // Alice's reply to it: a session derived from the request (its sender, its
  // session, its epoch and its frame index), a chain of Alice's on that
  // session in her current epoch, packet 0 with frame 0 under MK_0.
  const R = INPUTS.reply;
  const replySessionInput = concatBytes(
    utf8("unibus/reply/v1"),
    bob.signPub,
    session,
    u32(epoch),
    u32(T.firstFrame),
  );
  const replySession = replySessionFor(bob.signPub, session, epoch, T.firstFrame);
  if (toHex(replySession) !== toHex(sha256(replySessionInput).subarray(0, 16))) {
    throw new Error("lib/e2e/packet.ts replySessionFor disagrees with the formula spelled out");
  }
  const replyCk0 = initialChainKey(roomKey, {
    roomId: room,
    epoch,
    sender: alice.signPub,
    session: replySession,
  });
  const replyMk0 = hkdf(sha256, replyCk0, salt, stepInfo, 64).slice(0, 32);
  const replyPacket = encodePacket(
    {
      roomId: room,
      epoch,
      session: replySession,
      signer: alice.signer,
      encrypted: true,
      sentAt: R.sentAt,
    },
    { index: 0, firstFrame: 0, key: replyMk0 },
    [utf8(R.frameUtf8)],
    fromHex(R.nonceHex),
  );

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
    membership: logVector(bodies, changes, state),
    membershipBulk: logVector(bulkBodies, bulk, bulkState),
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
    /** Bob's request (timed, one frame) and Alice's reply to it (§2.9 request/reply). */
    timedPacket: {
      name: "timed-request-one-frame",
      roomId: room,
      encrypted: true,
      sender: "bob",
      epoch,
      sessionHex: INPUTS.sessionHex,
      index: T.index,
      firstFrame: T.firstFrame,
      sentAtMs: T.sentAt,
      framesUtf8: T.framesUtf8,
      nonceHex: T.nonceHex,
      messageKeyHex: toHex(mks[T.index]),
      headerHex: toHex(timedHeader),
      aadHex: toHex(bodyAad(room, timedHeader)),
      signatureHex: toHex(timedPacket.subarray(timedPacket.length - 64)),
      packetHex: toHex(timedPacket),
    },
    reply: {
      request: "timed-request-one-frame",
      requester: "bob",
      replier: "alice",
      epoch,
      replySessionInputHex: toHex(replySessionInput),
      replySessionHex: toHex(replySession),
      chainKey0Hex: toHex(replyCk0),
      messageKeyHex: toHex(replyMk0),
      sentAtMs: R.sentAt,
      frameUtf8: R.frameUtf8,
      nonceHex: R.nonceHex,
      packetHex: toHex(replyPacket),
    },
    /** A creation naming two members besides the creator (§2.4, one change). */
    membershipCreateMany: logVector(createBodies, createMany, createManyState),
    /** Logs every verifier refuses: each breaks one rule of several members in a change. */
    membershipRefused,
    /** A v1 packet (the first vector of the previous format) a v2 receiver must refuse by version. */
    oldVersionPacketHex: OLD_V1_PACKET_HEX,
  };
}

if (import.meta.main) {
  const out = new URL("../tests/fixtures/e2e_vectors.json", import.meta.url);
  await Deno.writeTextFile(out, JSON.stringify(buildVectors(), null, 2) + "\n");
  console.log(`wrote ${out.pathname}`);
}
