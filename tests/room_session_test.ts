import { LIVE_FUTURE_MS, LIVE_SKEW_MS, RoomSession } from "../lib/client/room_session.ts";
import type { RoomView, SealedKeyView } from "../lib/client/control_plane.ts";
import { fromHex, toBase64, toHex } from "../lib/e2e/bytes.ts";
import { changeHash, signChange, type SignedChange } from "../lib/e2e/membership.ts";
import { decodePacket, encodePacket, replySessionFor } from "../lib/e2e/packet.ts";
import { Chain, initialChainKey } from "../lib/e2e/ratchet.ts";
import { generateRoomKey, sealRoomKey } from "../lib/e2e/room_key.ts";
import { generateIdentity, type Identity } from "../lib/identity/identity.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";

const ROOM = "00112233445566778899aabbccddeeff";
const enc = new TextEncoder();
const POLICY = { encrypt: true, sign: true, persist: false };

/** A room created by `admin` with `member` added: epoch 1, key sealed to both. */
function twoMemberRoom(
  admin: Identity,
  member: Identity,
  policy = POLICY,
): { view: RoomView; keys: SealedKeyView[]; roomKey: Uint8Array } {
  const create = signChange({
    room: ROOM,
    seq: 0,
    prev: "0".repeat(64),
    op: "create",
    subject: "t.room",
    policy,
    member: admin.signPubHex,
    kex: admin.kexPubHex,
    kexSig: admin.kexSigHex,
    role: "admin",
    epoch: 0,
    by: admin.signPubHex,
    at: 1,
  }, admin.signer);
  const add = signChange({
    room: ROOM,
    seq: 1,
    prev: changeHash(create),
    op: "add",
    member: member.signPubHex,
    kex: member.kexPubHex,
    kexSig: member.kexSigHex,
    role: "member",
    epoch: 1,
    by: admin.signPubHex,
    at: 2,
  }, admin.signer);
  const changes: SignedChange[] = [create, add];
  const roomKey = generateRoomKey();
  const keys = [admin, member].map((m) => ({
    epoch: 1,
    recipient: m.signPubHex,
    sealed: toBase64(sealRoomKey({
      roomId: ROOM,
      epoch: 1,
      roomKey,
      memberSignPub: m.signPub,
      memberKexPub: m.kexPub,
      admin: admin.signer,
    })),
    sealedBy: admin.signPubHex,
  }));
  const view: RoomView = {
    id: ROOM,
    subject: "t.room",
    policy,
    epoch: 1,
    createdBy: admin.signPubHex,
    createdAt: 1,
    members: [
      { signPub: admin.signPubHex, role: "admin" },
      { signPub: member.signPubHex, role: "member" },
    ],
    changes,
    stream: null,
  };
  return { view, keys: keys as unknown as SealedKeyView[], roomKey };
}

/** What `who` sees: its own sealed key only. */
function sessionOf(who: Identity, room: { view: RoomView; keys: SealedKeyView[] }): RoomSession {
  const mine = (room.keys as unknown as Array<SealedKeyView & { recipient: string }>)
    .filter((k) => k.recipient === who.signPubHex);
  return new RoomSession(who, room.view, mine);
}

Deno.test("a stranger's packet claiming a far future epoch is dropped, not a reason to reload", () => {
  const alice = generateIdentity("alice");
  const bob = generateIdentity("bob");
  const stranger = generateIdentity("stranger");
  const session = sessionOf(alice, twoMemberRoom(alice, bob));
  const forged = encodePacket(
    {
      roomId: ROOM,
      epoch: 0xffffffff,
      session: new Uint8Array(16),
      signer: stranger.signer,
      encrypted: true,
    },
    { index: 0, firstFrame: 0, key: new Uint8Array(32) },
    [enc.encode("x")],
  );
  assertEquals(session.receive(forged).kind, "dropped");
  assertEquals(session.stats.nonMember, 1);
});

Deno.test("one member opening thousands of sessions cannot push another member's chain out", () => {
  const alice = generateIdentity("alice");
  const mallory = generateIdentity("mallory");
  const room = twoMemberRoom(alice, mallory);
  const receiver = sessionOf(alice, room);
  const aliceSender = sessionOf(alice, room);
  assertEquals(receiver.receive(aliceSender.seal([enc.encode("first")])).kind, "delivered");
  // More throw-away sessions than the receiver keeps in all.
  for (let i = 0; i < 5000; i++) {
    const session = crypto.getRandomValues(new Uint8Array(16));
    const chain = new Chain(
      initialChainKey(room.roomKey, { roomId: ROOM, epoch: 1, sender: mallory.signPub, session }),
    );
    receiver.receive(encodePacket(
      {
        roomId: ROOM,
        epoch: 1,
        session,
        signer: mallory.signer,
        encrypted: true,
        sentAt: Date.now(),
      },
      { index: 0, firstFrame: 0, key: chain.next() },
      [enc.encode("junk")],
    ));
  }
  assertEquals(receiver.stats.delivered, 5001);
  const r = receiver.receive(aliceSender.seal([enc.encode("second")]));
  assertEquals(r.kind, "delivered");
});

Deno.test("frames of one packet are numbered in order, a session's numbering continues, a replayed packet is dropped whole", () => {
  const alice = generateIdentity("alice");
  const bob = generateIdentity("bob");
  const room = twoMemberRoom(alice, bob);
  const sender = sessionOf(alice, room);
  const receiver = sessionOf(bob, room);
  const first = sender.seal(["a", "b", "c"].map((t) => enc.encode(t)));
  const second = sender.seal([enc.encode("d")]);
  const r1 = receiver.receive(first);
  const r2 = receiver.receive(second);
  assert(r1.kind === "delivered" && r2.kind === "delivered");
  assertEquals(
    [...r1.frames, ...r2.frames].map((f) => [f.meta.index, new TextDecoder().decode(f.plaintext)]),
    [[0, "a"], [1, "b"], [2, "c"], [3, "d"]],
  );
  for (const again of [first, second]) {
    const r = receiver.receive(again);
    assertEquals(r.kind === "dropped" && r.reason, "replayed");
  }
  assertEquals([receiver.stats.delivered, receiver.stats.replayed], [4, 2]);
});

Deno.test("a signed packet whose frame numbers go back in its session is dropped as invalid", () => {
  const alice = generateIdentity("alice");
  const bob = generateIdentity("bob");
  const room = twoMemberRoom(alice, bob);
  const receiver = sessionOf(bob, room);
  const session = crypto.getRandomValues(new Uint8Array(16));
  const chain = new Chain(
    initialChainKey(room.roomKey, { roomId: ROOM, epoch: 1, sender: alice.signPub, session }),
  );
  const ctx = {
    roomId: ROOM,
    epoch: 1,
    session,
    signer: alice.signer,
    encrypted: true,
    sentAt: Date.now(),
  };
  const ok = encodePacket(ctx, { index: 0, firstFrame: 5, key: chain.next() }, [enc.encode("x")]);
  assertEquals(receiver.receive(ok).kind, "delivered");
  const back = encodePacket(ctx, { index: 1, firstFrame: 5, key: chain.next() }, [enc.encode("y")]);
  const r = receiver.receive(back);
  assertEquals(r.kind === "dropped" && r.reason, "invalid");
});

Deno.test("a packet of protocol v1 is dropped with the reason version and says so", () => {
  const alice = generateIdentity("alice");
  const bob = generateIdentity("bob");
  const receiver = sessionOf(bob, twoMemberRoom(alice, bob));
  const v2 = sessionOf(alice, twoMemberRoom(alice, bob)).seal([enc.encode("x")]);
  const v1 = v2.slice();
  v1[3] = 0x31; // "UBP1"
  const r = receiver.receive(v1);
  assert(r.kind === "dropped");
  assertEquals(r.reason, "version");
  assert(r.detail.includes("v1 is not supported"), r.detail);
  assertEquals([receiver.stats.version, receiver.stats.invalid], [1, 0]);
});

Deno.test("a live receiver refuses packets signed before it started, and untimed ones; history reads them", () => {
  const alice = generateIdentity("alice");
  const bob = generateIdentity("bob");
  const room = twoMemberRoom(alice, bob);
  const bobSender = sessionOf(bob, room);
  const receiver = sessionOf(alice, room);
  const session = crypto.getRandomValues(new Uint8Array(16));
  const packetAt = (sentAt: number | undefined, index: number) => {
    const chain = new Chain(
      initialChainKey(room.roomKey, { roomId: ROOM, epoch: 1, sender: bob.signPub, session }),
    );
    return encodePacket(
      { roomId: ROOM, epoch: 1, session, signer: bob.signer, encrypted: true, sentAt },
      { index, firstFrame: index, key: chain.keyFor(index) },
      [enc.encode(`m${index}`)],
    );
  };
  const old = packetAt(Date.now() - LIVE_SKEW_MS - 1000, 0);
  const untimed = packetAt(undefined, 1);
  // Dated ahead so it would pass any later start: the future bound refuses it.
  const future = packetAt(Date.now() + LIVE_FUTURE_MS + 60_000, 3);
  for (const p of [old, untimed, future]) {
    const r = receiver.receive(p);
    assertEquals([r.kind, r.kind === "dropped" && r.reason], ["dropped", "replayed"]);
  }
  // Nothing was consumed from the chain: a fresh packet of the same session still opens.
  assertEquals(receiver.receive(packetAt(Date.now(), 2)).kind, "delivered");
  assertEquals(receiver.receive(bobSender.seal([enc.encode("now")])).kind, "delivered");
  // Reading history is explicit and takes them.
  const reader = receiver.forHistory();
  assertEquals(reader.receive(old).kind, "delivered");
  assertEquals(reader.receive(untimed).kind, "delivered");
});

Deno.test("receiving positions exported by one session are replays in the next (sign-only and encrypted)", () => {
  for (const encrypt of [true, false]) {
    const alice = generateIdentity("alice");
    const bob = generateIdentity("bob");
    const room = twoMemberRoom(alice, bob);
    if (!encrypt) room.view.policy = { encrypt: false, sign: true, persist: false };
    const bobSender = sessionOf(bob, room);
    const first = sessionOf(alice, room);
    const p0 = bobSender.seal([enc.encode("0")]);
    const p1 = bobSender.seal([enc.encode("1")]);
    const p2 = bobSender.seal([enc.encode("2")]);
    assertEquals(first.receive(p0).kind, "delivered");
    assertEquals(first.receive(p1).kind, "delivered");
    const snap = JSON.parse(JSON.stringify(first.exportReceive()));
    const next = sessionOf(alice, room);
    next.importReceive(snap);
    assertEquals(next.receive(p1).kind, "dropped");
    assertEquals(next.receive(p0).kind, "dropped");
    assertEquals(next.stats.replayed, 2);
    assertEquals(next.receive(p2).kind, "delivered", `encrypt=${encrypt}`);
    assertThrows(
      () => next.importReceive({ chains: [{ id: "1/zz/00", at: 0 }], retired: [] }),
      RangeError,
    );
  }
});

/** `room` one change later: `admin` adds `newcomer`, epoch 2 with a new key sealed to all three. */
function withAnotherMember(
  room: { view: RoomView; keys: SealedKeyView[] },
  admin: Identity,
  members: Identity[],
  newcomer: Identity,
): { view: RoomView; keys: SealedKeyView[] } {
  const prev = room.view.changes[room.view.changes.length - 1];
  const add = signChange({
    room: ROOM,
    seq: 2,
    prev: changeHash(prev),
    op: "add",
    member: newcomer.signPubHex,
    kex: newcomer.kexPubHex,
    kexSig: newcomer.kexSigHex,
    role: "member",
    epoch: 2,
    by: admin.signPubHex,
    at: 3,
  }, admin.signer);
  const roomKey = generateRoomKey();
  const keys = [...members, newcomer].map((m) => ({
    epoch: 2,
    recipient: m.signPubHex,
    sealed: toBase64(sealRoomKey({
      roomId: ROOM,
      epoch: 2,
      roomKey,
      memberSignPub: m.signPub,
      memberKexPub: m.kexPub,
      admin: admin.signer,
    })),
    sealedBy: admin.signPubHex,
  }));
  return {
    view: {
      ...room.view,
      epoch: 2,
      members: [...room.view.members, { signPub: newcomer.signPubHex, role: "member" }],
      changes: [...room.view.changes, add],
    },
    keys: [...room.keys, ...(keys as unknown as SealedKeyView[])],
  };
}

Deno.test("a reply is sent in the replier's current epoch, on the session of the request's epoch", () => {
  // protocol.md §2.9: the reply's epoch is the replier's current one; the
  // session is derived from the request (its epoch and index), not the reply.
  const alice = generateIdentity("alice");
  const bob = generateIdentity("bob");
  const carol = generateIdentity("carol");
  const atEpoch1 = twoMemberRoom(alice, bob);
  const bobAt1 = sessionOf(bob, atEpoch1);
  const { packet: request, replySession } = bobAt1.sealRequest(enc.encode("status?"));
  assertEquals(decodePacket(ROOM, request).epoch, 1);

  // The membership moves on before Alice answers.
  const atEpoch2 = withAnotherMember(atEpoch1, alice, [alice, bob], carol);
  const aliceAt2 = sessionOf(alice, atEpoch2);
  const got = aliceAt2.receive(request);
  assert(got.kind === "delivered", got.kind);
  const meta = got.frames[0].meta;
  assertEquals([meta.epoch, meta.index], [1, 0]);
  const reply = aliceAt2.sealReply(meta, enc.encode("all well"));

  const header = decodePacket(ROOM, reply);
  assertEquals(header.epoch, 2, "the replier's current epoch");
  assertEquals(toHex(header.session), replySession);
  assertEquals(
    replySession,
    toHex(replySessionFor(bob.signPub, fromHex(meta.session), 1, 0)),
    "derived with the request's epoch and index",
  );
  // A requester still at epoch 1 learns that it must refresh; at epoch 2 it reads the reply.
  assertEquals(bobAt1.receive(reply), { kind: "stale", epoch: 2 });
  const r = sessionOf(bob, atEpoch2).receive(reply);
  assert(r.kind === "delivered", r.kind);
  assertEquals(new TextDecoder().decode(r.frames[0].plaintext), "all well");
  assertEquals([r.frames[0].meta.epoch, r.frames[0].meta.index], [2, 0]);
});

Deno.test("replies to many requests keep the replier's room session, and each reply is taken once, for its request only", () => {
  for (const encrypt of [true, false]) repliesKeepTheReplierSession({ ...POLICY, encrypt });
});

function repliesKeepTheReplierSession(policy: typeof POLICY): void {
  const alice = generateIdentity("alice");
  const bob = generateIdentity("bob");
  const room = twoMemberRoom(alice, bob, policy);
  // One session per client and room, as lib/client/client.ts keeps it: the
  // requester's replies and its room subscription share it.
  const aliceSide = sessionOf(alice, room);
  const bobSide = sessionOf(bob, room);
  assertEquals(aliceSide.receive(bobSide.seal([enc.encode("first")])).kind, "delivered");
  const answered: Array<{ reply: Uint8Array; replySession: string }> = [];
  // More exchanges than the 64 sessions a receiver keeps per sender.
  for (let i = 0; i < 100; i++) {
    const { packet, replySession } = aliceSide.sealRequest(enc.encode(`question ${i}`));
    const got = bobSide.receive(packet);
    assert(got.kind === "delivered", got.kind);
    const reply = bobSide.sealReply(got.frames[0].meta, enc.encode(`answer ${i}`));
    const r = aliceSide.receiveReply(reply, replySession);
    assert(r.kind === "delivered", `reply ${i}: ${r.kind}`);
    assertEquals(new TextDecoder().decode(r.frames[0].plaintext), `answer ${i}`);
    answered.push({ reply, replySession });
  }
  // Bob's room messages still arrive: no reply session pushed his out.
  const later = aliceSide.receive(bobSide.seal([enc.encode("second")]));
  assert(later.kind === "delivered", later.kind);
  assertEquals(aliceSide.exportReceive().chains.length, 1, "reply sessions are not kept open");
  // A reply again, or a genuine reply to another request, is refused.
  const again = aliceSide.receiveReply(answered[5].reply, answered[5].replySession);
  assertEquals(again.kind === "dropped" && again.reason, "replayed");
  const other = aliceSide.receiveReply(answered[7].reply, answered[8].replySession);
  assertEquals(other.kind === "dropped" && other.detail, "the reply does not answer this request");
}
