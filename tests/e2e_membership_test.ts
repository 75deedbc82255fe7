/**
 * Unit tests of signed membership logs and sealed room key envelopes: what a
 * server (or a member acting as one) can try to slip into a room.
 */

import { generateIdentity, type Identity } from "../lib/identity/identity.ts";
import { concatBytes, lengthPrefixed, toBase64, toHex, u32, utf8 } from "../lib/e2e/bytes.ts";
import {
  applyChange,
  type ChangeBody,
  changeHash,
  changeText,
  LastAdminError,
  MembershipError,
  parseChange,
  signChange,
  type SignedChange,
  verifyLog,
} from "../lib/e2e/membership.ts";
import { generateRoomKey, openRoomKey, RoomKeyError, sealRoomKey } from "../lib/e2e/room_key.ts";
import { sealBox } from "../lib/e2e/sealed_box.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";

const ROOM = "0123456789abcdef0123456789abcdef";

const alice = generateIdentity();
const bob = generateIdentity();
const carol = generateIdentity();
const mallory = generateIdentity();

function createBody(by: Identity = alice, over: Partial<ChangeBody> = {}): ChangeBody {
  return {
    room: ROOM,
    seq: 0,
    prev: "0".repeat(64),
    op: "create",
    subject: "chat.ops",
    policy: { encrypt: true, sign: true, persist: false },
    member: by.signPubHex,
    kex: by.kexPubHex,
    kexSig: by.kexSigHex,
    role: "admin",
    epoch: 0,
    by: by.signPubHex,
    at: 1700000000000,
    ...over,
  };
}

/** The body of the change that would legitimately follow `log`. */
function next(
  log: SignedChange[],
  op: "add" | "remove",
  member: Identity,
  over: Partial<ChangeBody> = {},
): ChangeBody {
  const seq = log.length;
  const body: ChangeBody = {
    room: ROOM,
    seq,
    prev: changeHash(log[seq - 1]),
    op,
    member: member.signPubHex,
    epoch: seq,
    by: alice.signPubHex,
    at: 1700000000000 + seq,
    ...(op === "add" ? { kex: member.kexPubHex, kexSig: member.kexSigHex, role: "member" } : {}),
    ...over,
  };
  return body;
}

/** create(alice) → add(bob, member): the base of most tests. */
function baseLog(): SignedChange[] {
  const log = [signChange(createBody(), alice.signer)];
  log.push(signChange(next(log, "add", bob), alice.signer));
  return log;
}

/** Signs arbitrary text as `id`, the way a forger with that key would. */
function signText(text: string, id: Identity): SignedChange {
  return { text, sig: toBase64(id.signer.sign(utf8(text))) };
}

// ---- membership: the happy path ----

Deno.test("membership: create, add and remove give one member set per epoch", () => {
  const log = baseLog();
  log.push(signChange(next(log, "add", carol, { role: "admin" }), alice.signer));
  log.push(signChange(next(log, "remove", bob), alice.signer));
  const s = verifyLog(ROOM, log);
  assertEquals([s.epoch, s.seq, s.head], [3, 3, changeHash(log[3])]);
  assertEquals([...s.members.keys()].sort(), [alice.signPubHex, carol.signPubHex].sort());
  assertEquals(s.members.get(carol.signPubHex)?.kexPub, carol.kexPubHex);
  assertEquals([...s.epochs.get(1)!.keys()].sort(), [alice.signPubHex, bob.signPubHex].sort());
  assert(!s.epochs.get(0)!.has(bob.signPubHex));
  assert(!s.epochs.get(3)!.has(bob.signPubHex));
  // A newly added admin may sign the next change.
  const more = signChange(next(log, "add", bob, { by: carol.signPubHex }), carol.signer);
  assertEquals(applyChange(s, more).epoch, 4);
});

// ---- membership: injected members ----

Deno.test("membership: a change signed by a non-admin member is refused", () => {
  const log = baseLog();
  const injected = signChange(next(log, "add", mallory, { by: bob.signPubHex }), bob.signer);
  assertThrows(() => verifyLog(ROOM, [...log, injected]), MembershipError, "not an admin");
  assertThrows(() => applyChange(verifyLog(ROOM, log), injected), MembershipError, "not an admin");
});

Deno.test("membership: a change signed by a key not in the log is refused", () => {
  const log = baseLog();
  const injected = signChange(
    next(log, "add", mallory, { by: mallory.signPubHex }),
    mallory.signer,
  );
  assertThrows(() => verifyLog(ROOM, [...log, injected]), MembershipError, "not an admin");
});

Deno.test("membership: a change whose signature is not by `by` is refused", () => {
  const log = baseLog();
  // Names Alice as the signer but is signed by Mallory: the server's forgery.
  const text = changeText(next(log, "add", mallory));
  const forged = signText(text, mallory);
  assertThrows(() => verifyLog(ROOM, [...log, forged]), MembershipError, "does not verify");
  // Alice's genuine change with one character edited after signing.
  const genuine = signChange(next(log, "add", carol), alice.signer);
  const edited = { ...genuine, text: genuine.text.replace("role: member", "role: admin") };
  assertThrows(() => verifyLog(ROOM, [...log, edited]), MembershipError, "does not verify");
  assertThrows(
    () => verifyLog(ROOM, [...log, { ...genuine, sig: "not base64!" }]),
    MembershipError,
    "not base64",
  );
});

Deno.test("membership: a removed admin can no longer sign changes", () => {
  const log = baseLog();
  log.push(signChange(next(log, "add", carol, { role: "admin" }), alice.signer));
  log.push(signChange(next(log, "remove", alice, { by: carol.signPubHex }), carol.signer));
  const late = signChange(next(log, "add", mallory), alice.signer);
  assertThrows(() => verifyLog(ROOM, [...log, late]), MembershipError, "not an admin");
});

Deno.test("membership: a member may leave on its own signature, and only itself", () => {
  const log = baseLog();
  log.push(signChange(next(log, "add", carol), alice.signer));
  // Bob, a plain member, signs his own removal: no admin's consent needed.
  const leave = signChange(next(log, "remove", bob, { by: bob.signPubHex }), bob.signer);
  const s = verifyLog(ROOM, [...log, leave]);
  assertEquals(s.epoch, 3);
  assert(!s.members.has(bob.signPubHex));
  assertEquals([...s.epochs.get(3)!.keys()].sort(), [alice.signPubHex, carol.signPubHex].sort());
  // But a member's signature removes nobody else.
  const push = signChange(next(log, "remove", carol, { by: bob.signPubHex }), bob.signer);
  assertThrows(() => verifyLog(ROOM, [...log, push]), MembershipError, "not an admin");
  // And someone who is not a member cannot "leave" into the log.
  const stranger = signChange(
    next(log, "remove", mallory, { by: mallory.signPubHex }),
    mallory.signer,
  );
  assertThrows(() => verifyLog(ROOM, [...log, stranger]), MembershipError, "not an admin");
});

Deno.test("membership: the last admin can neither leave nor be removed", () => {
  const log = baseLog();
  const leave = signChange(next(log, "remove", alice), alice.signer);
  assertThrows(() => verifyLog(ROOM, [...log, leave]), LastAdminError, "last admin");
  // With a second admin, the first may go.
  log.push(signChange(next(log, "add", carol, { role: "admin" }), alice.signer));
  const s = verifyLog(ROOM, [...log, signChange(next(log, "remove", alice), alice.signer)]);
  assertEquals([...s.members.values()].filter((m) => m.role === "admin").length, 1);
});

// ---- membership: swapped kex keys ----

Deno.test("membership: a kex key that its kex-sig does not bind is refused", () => {
  const log = baseLog();
  // The server swaps Carol's key-exchange key for its own, keeping Carol's signature.
  const swapped = signChange(next(log, "add", carol, { kex: mallory.kexPubHex }), alice.signer);
  assertThrows(() => verifyLog(ROOM, [...log, swapped]), MembershipError, "not bound");
  // Or brings its own key with its own (valid, but someone else's) binding.
  const borrowed = signChange(
    next(log, "add", carol, { kex: mallory.kexPubHex, kexSig: mallory.kexSigHex }),
    alice.signer,
  );
  assertThrows(() => verifyLog(ROOM, [...log, borrowed]), MembershipError, "not bound");
  // The same rule holds for the creator.
  const create = signChange(createBody(alice, { kex: mallory.kexPubHex }), alice.signer);
  assertThrows(() => verifyLog(ROOM, [create]), MembershipError, "not bound");
});

Deno.test("membership: a low-order kex key is refused even with a valid binding signature", () => {
  const log = baseLog();
  const zero = "00".repeat(32);
  const sig = toHex(carol.signer.sign(utf8(`unibus/kex-binding/v1\n${carol.signPubHex}\n${zero}`)));
  const bad = signChange(next(log, "add", carol, { kex: zero, kexSig: sig }), alice.signer);
  assertThrows(() => verifyLog(ROOM, [...log, bad]), MembershipError, "not bound");
});

// ---- membership: ordering ----

Deno.test("membership: a wrong prev, seq or epoch is refused", () => {
  const log = baseLog();
  const cases: Array<[string, Partial<ChangeBody>]> = [
    ["prev of an older change", { prev: changeHash(log[0]) }],
    ["zero prev", { prev: "0".repeat(64) }],
    ["seq repeated", { seq: 1 }],
    ["seq skipped", { seq: 3 }],
    ["epoch repeated", { epoch: 1 }],
    ["epoch skipped", { epoch: 3 }],
  ];
  for (const [label, over] of cases) {
    const bad = signChange(next(log, "add", carol, over), alice.signer);
    const err = assertThrows(() => verifyLog(ROOM, [...log, bad]), MembershipError);
    assert(/does not follow|wrong epoch/.test(err.message), `${label}: ${err.message}`);
  }
  // Reordering or dropping changes breaks the chain of hashes too.
  const third = signChange(next(log, "add", carol), alice.signer);
  assertThrows(() => verifyLog(ROOM, [log[0], third]), MembershipError, "does not follow");
  assertThrows(() => verifyLog(ROOM, [log[0], third, log[1]]), MembershipError);
});

Deno.test("membership: adding a member twice or removing a non-member is refused", () => {
  const log = baseLog();
  const again = signChange(next(log, "add", bob), alice.signer);
  assertThrows(() => verifyLog(ROOM, [...log, again]), MembershipError, "already a member");
  const gone = signChange(next(log, "remove", carol), alice.signer);
  assertThrows(() => verifyLog(ROOM, [...log, gone]), MembershipError, "not a member");
});

Deno.test("membership: a change for another room is refused, even when validly signed", () => {
  const log = baseLog();
  const other = signChange(next(log, "add", carol, { room: "f".repeat(32) }), alice.signer);
  assertThrows(() => verifyLog(ROOM, [...log, other]), MembershipError, "another room");
  assertThrows(() => applyChange(verifyLog(ROOM, log), other), MembershipError, "another room");
  assertThrows(() => verifyLog("f".repeat(32), log), MembershipError, "another room");
});

// ---- membership: create rules ----

Deno.test("membership: the log must start with the creator adding itself as admin at seq 0, epoch 0", () => {
  const cases: Array<[string, ChangeBody, Identity]> = [
    ["seq 1", createBody(alice, { seq: 1 }), alice],
    ["epoch 1", createBody(alice, { epoch: 1 }), alice],
    ["non-zero prev", createBody(alice, { prev: "1".repeat(64) }), alice],
    ["creator as member", createBody(alice, { role: "member" }), alice],
    [
      "someone else as creator",
      createBody(bob, { by: alice.signPubHex }),
      alice,
    ],
  ];
  for (const [label, body, signer] of cases) {
    const err = assertThrows(
      () => verifyLog(ROOM, [signChange(body, signer.signer)]),
      MembershipError,
    );
    assert(/first change|creator/.test(err.message), `${label}: ${err.message}`);
  }
  const log = baseLog();
  // A log that starts with an add is refused.
  assertThrows(() => verifyLog(ROOM, [log[1]]), MembershipError, "first change");
  assertThrows(() => verifyLog(ROOM, []), MembershipError, "empty");
  // A second create, even by the admin, is refused.
  const recreate = signChange(
    createBody(alice, { seq: 2, prev: changeHash(log[1]), epoch: 2 }),
    alice.signer,
  );
  assertThrows(() => verifyLog(ROOM, [...log, recreate]), MembershipError, "created once");
});

Deno.test("membership: a policy with encrypt but not sign is refused, not read as encrypt,sign", () => {
  // protocol.md §2.3: one spelling per room, so `policy: encrypt` is invalid.
  for (const persist of [false, true]) {
    const body = createBody(alice, { policy: { encrypt: true, sign: false, persist } });
    const change = signChange(body, alice.signer);
    assert(
      change.text.includes(`policy: encrypt${persist ? ",persist" : ""}\n`),
      change.text,
    );
    assertThrows(() => verifyLog(ROOM, [change]), MembershipError, "always signed");
  }
  // Every other subset is a valid policy.
  for (
    const policy of [
      { encrypt: false, sign: false, persist: false },
      { encrypt: false, sign: true, persist: false },
      { encrypt: false, sign: false, persist: true },
      { encrypt: false, sign: true, persist: true },
      { encrypt: true, sign: true, persist: false },
      { encrypt: true, sign: true, persist: true },
    ]
  ) {
    const state = verifyLog(ROOM, [signChange(createBody(alice, { policy }), alice.signer)]);
    assertEquals(state.policy, policy);
  }
});

Deno.test("membership: signChange refuses a body whose `by` is not the signer", () => {
  assertThrows(() => signChange(createBody(alice), bob.signer), MembershipError);
});

// ---- membership: canonical text ----

Deno.test("membership: every non-canonical spelling of a change is refused, even when signed", () => {
  const text = changeText(createBody());
  const variants: Array<[string, string]> = [
    ["CRLF line ends", text.replaceAll("\n", "\r\n")],
    ["no final newline", text.slice(0, -1)],
    ["extra final newline", text + "\n"],
    ["two spaces after a colon", text.replace("seq: 0", "seq:  0")],
    ["leading zero", text.replace("at: 1700000000000", "at: 01700000000000")],
    [
      "uppercase hex",
      text.replace(`member: ${alice.signPubHex}`, `member: ${alice.signPubHex.toUpperCase()}`),
    ],
    ["fields reordered", text.replace(/(seq: 0\n)(prev: 0+\n)/, "$2$1")],
    ["unknown field", text.replace("at: ", "note: hi\nat: ")],
    ["duplicate field", text.replace("seq: 0\n", "seq: 0\nseq: 0\n")],
    ["policy reordered", text.replace("policy: encrypt,sign", "policy: sign,encrypt")],
    ["unknown policy", text.replace("policy: encrypt,sign", "policy: encrypt,sign,shout")],
    ["wrong header", text.replace("unibus/membership/v1", "unibus/membership/v2")],
    [
      "remove with kex",
      text.replace("op: create", "op: remove").replace(/subject.*\npolicy.*\n/, ""),
    ],
  ];
  for (const [label, bad] of variants) {
    assert(bad !== text, `${label} changes the text`);
    assertThrows(() => parseChange(bad), MembershipError);
    const err = assertThrows(() => verifyLog(ROOM, [signText(bad, alice)]), MembershipError);
    assert(err instanceof MembershipError, label);
  }
  assertEquals(changeText(parseChange(text)), text);
});

Deno.test("membership: a field containing a line break cannot be written", () => {
  assertThrows(
    () => changeText(createBody(alice, { subject: "a\nrole: admin" })),
    MembershipError,
    "line break",
  );
});

Deno.test("membership: a create naming a subject outside the grammar does not verify, even when signed", () => {
  for (
    const [subject, rule] of [
      ["chat.ops\u0000x", "control_character"],
      ["\u0000x", "control_character"],
      ["chat.\u2603", "not_ascii"],
      ["chat.*", "wildcard"],
      ["", "empty"],
      ["_INBOX.x", "reserved_prefix"],
    ]
  ) {
    const log = [signChange(createBody(alice, { subject }), alice.signer)];
    assertThrows(() => verifyLog(ROOM, log), MembershipError, `rule ${rule}`);
    assertThrows(() => parseChange(log[0].text), MembershipError, `rule ${rule}`);
  }
  assertEquals(verifyLog(ROOM, [signChange(createBody(), alice.signer)]).subject, "chat.ops");
});

// ---- room keys ----

const EPOCH = 3;

function envelopeFor(member: Identity, over: { roomId?: string; epoch?: number } = {}) {
  const roomKey = generateRoomKey();
  const envelope = sealRoomKey({
    roomId: over.roomId ?? ROOM,
    epoch: over.epoch ?? EPOCH,
    roomKey,
    memberSignPub: member.signPub,
    memberKexPub: member.kexPub,
    admin: alice.signer,
  });
  return { roomKey, envelope };
}

Deno.test("room key: the member opens an admin's envelope and gets the room key", () => {
  const { roomKey, envelope } = envelopeFor(bob);
  const key = openRoomKey({
    envelope,
    roomId: ROOM,
    epoch: EPOCH,
    adminSignPub: alice.signPub,
    me: bob,
  });
  assertEquals(toHex(key), toHex(roomKey));
});

Deno.test("room key: an envelope replayed for another room or epoch is refused", () => {
  const { envelope } = envelopeFor(bob);
  const open = (roomId: string, epoch: number) => () =>
    openRoomKey({ envelope, roomId, epoch, adminSignPub: alice.signPub, me: bob });
  assertThrows(open("f".repeat(32), EPOCH), RoomKeyError, "not signed");
  assertThrows(open(ROOM, EPOCH + 1), RoomKeyError, "not signed");
});

Deno.test("room key: a box whose inner room or epoch differs from the signed one is refused", () => {
  // An admin's client bug or a confused admin: the signature is for (ROOM,
  // EPOCH) but the sealed content names something else. Only the inner check
  // catches it.
  for (
    const [room, epoch] of [["f".repeat(32), EPOCH], [ROOM, EPOCH + 1]] as Array<[string, number]>
  ) {
    const sealed = sealBox(
      concatBytes(lengthPrefixed(room), u32(epoch), generateRoomKey()),
      bob.kexPub,
    );
    const sig = alice.signer.sign(
      concatBytes(
        utf8("unibus/room-key/v1"),
        lengthPrefixed(ROOM),
        u32(EPOCH),
        bob.signPub,
        sealed,
      ),
    );
    assertThrows(
      () =>
        openRoomKey({
          envelope: concatBytes(sealed, sig),
          roomId: ROOM,
          epoch: EPOCH,
          adminSignPub: alice.signPub,
          me: bob,
        }),
      RoomKeyError,
      "another room or epoch",
    );
  }
});

Deno.test("room key: an envelope signed by a key other than the admin's is refused", () => {
  const roomKey = generateRoomKey();
  const envelope = sealRoomKey({
    roomId: ROOM,
    epoch: EPOCH,
    roomKey,
    memberSignPub: bob.signPub,
    memberKexPub: bob.kexPub,
    admin: mallory.signer, // the server, or a non-admin member, minting its own key
  });
  assertThrows(
    () =>
      openRoomKey({ envelope, roomId: ROOM, epoch: EPOCH, adminSignPub: alice.signPub, me: bob }),
    RoomKeyError,
    "not signed",
  );
});

Deno.test("room key: another identity cannot open a member's envelope", () => {
  const { envelope } = envelopeFor(bob);
  // Under its own name: the signature names Bob, so it fails first.
  assertThrows(
    () =>
      openRoomKey({ envelope, roomId: ROOM, epoch: EPOCH, adminSignPub: alice.signPub, me: carol }),
    RoomKeyError,
    "not signed",
  );
  // Claiming Bob's signing key: the box still needs Bob's X25519 private key.
  assertThrows(
    () =>
      openRoomKey({
        envelope,
        roomId: ROOM,
        epoch: EPOCH,
        adminSignPub: alice.signPub,
        me: { signPub: bob.signPub, kexPub: carol.kexPub, kexPriv: carol.kexPriv },
      }),
    RoomKeyError,
    "does not open",
  );
});

Deno.test("room key: tampered, truncated or malformed envelopes are refused", () => {
  const { envelope } = envelopeFor(bob);
  const open = (e: Uint8Array) => () =>
    openRoomKey({ envelope: e, roomId: ROOM, epoch: EPOCH, adminSignPub: alice.signPub, me: bob });
  for (let i = 0; i < envelope.length; i += 7) {
    const c = envelope.slice();
    c[i] ^= 1;
    assertThrows(open(c), RoomKeyError);
  }
  assertThrows(open(envelope.subarray(0, 64 + 47)), RoomKeyError, "too short");
  // Signed and sealed correctly, but the content has a trailing byte.
  const sealed = sealBox(
    concatBytes(lengthPrefixed(ROOM), u32(EPOCH), generateRoomKey(), Uint8Array.of(0)),
    bob.kexPub,
  );
  const sig = alice.signer.sign(
    concatBytes(utf8("unibus/room-key/v1"), lengthPrefixed(ROOM), u32(EPOCH), bob.signPub, sealed),
  );
  assertThrows(open(concatBytes(sealed, sig)), RoomKeyError, "another room or epoch");
});

// ---- membership: several members in one change (header v2) ----

const dave = generateIdentity();

function entry(id: Identity, role: "admin" | "member" = "member") {
  return { member: id.signPubHex, kex: id.kexPubHex, kexSig: id.kexSigHex, role };
}

Deno.test("membership: a create naming members and a bulk add are one change each, one epoch each", () => {
  const create = signChange(
    createBody(alice, { adds: [entry(carol), entry(bob, "admin")] }),
    alice.signer,
  );
  assert(create.text.startsWith("unibus/membership/v2\n"));
  // Canonical order whatever order the caller gave.
  const lines = create.text.split("\n").filter((l) => l.startsWith("add: "));
  assertEquals(lines.length, 2);
  assert(lines[0] < lines[1]);
  const log = [create];
  let s = verifyLog(ROOM, log);
  assertEquals([s.epoch, s.seq], [0, 0]);
  assertEquals(s.members.get(bob.signPubHex)?.role, "admin");
  assertEquals(s.members.get(carol.signPubHex)?.kexPub, carol.kexPubHex);
  assertEquals(s.members.size, 3);
  const add = signChange({
    room: ROOM,
    seq: 1,
    prev: changeHash(create),
    op: "add",
    adds: [entry(dave), entry(mallory)],
    epoch: 1,
    by: bob.signPubHex,
    at: 1700000000001,
  }, bob.signer);
  assert(!add.text.includes("\nmember: "));
  s = applyChange(s, add);
  assertEquals([s.epoch, s.seq, s.members.size], [1, 1, 5]);
  assert(!s.epochs.get(0)!.has(dave.signPubHex));
  assertEquals(verifyLog(ROOM, [create, add]).head, changeHash(add));
  assertEquals(changeText(parseChange(add.text)), add.text);
  // A single-member change is the v1 text, unchanged.
  assert(signChange(createBody(), alice.signer).text.startsWith("unibus/membership/v1\n"));
});

Deno.test("membership: a bulk change is refused if one member's kex is not bound, or one is already in", () => {
  const unbound = { ...entry(carol), kex: mallory.kexPubHex };
  const bad = signChange(createBody(alice, { adds: [entry(bob), unbound] }), alice.signer);
  assertThrows(() => verifyLog(ROOM, [bad]), MembershipError, "not bound");
  const log = [signChange(createBody(alice, { adds: [entry(bob)] }), alice.signer)];
  const again = signChange({
    room: ROOM,
    seq: 1,
    prev: changeHash(log[0]),
    op: "add",
    adds: [entry(bob), entry(carol)],
    epoch: 1,
    by: alice.signPubHex,
    at: 1700000000001,
  }, alice.signer);
  assertThrows(() => applyChange(verifyLog(ROOM, log), again), MembershipError, "already");
  const self = signChange(createBody(alice, { adds: [entry(alice)] }), alice.signer);
  assertThrows(() => verifyLog(ROOM, [self]), MembershipError, "twice");
  // Signed by a plain member: refused like any add.
  const byBob = signChange({
    ...parseChange(again.text),
    adds: [entry(carol), entry(dave)],
    by: bob.signPubHex,
  }, bob.signer);
  assertThrows(() => applyChange(verifyLog(ROOM, log), byBob), MembershipError, "not an admin");
});

Deno.test("membership: every non-canonical or unbounded spelling of a bulk change is refused, even when signed", () => {
  const inOrder = [entry(bob), entry(carol)].sort((x, y) => x.member < y.member ? -1 : 1);
  const text = changeText(createBody(alice, { adds: inOrder }));
  const [first, second] = text.split("\n").filter((l) => l.startsWith("add: "));
  const addText = changeText({
    room: ROOM,
    seq: 1,
    prev: "ab".repeat(32),
    op: "add",
    adds: inOrder,
    epoch: 1,
    by: alice.signPubHex,
    at: 1,
  });
  const many = Array.from({ length: 128 }, () => `add: ${"ab".repeat(32)}`).join("\n");
  const variants: Array<[string, string]> = [
    ["adds out of order", text.replace(`${first}\n${second}`, `${second}\n${first}`)],
    ["an add twice", text.replace(`${first}\n${second}`, `${first}\n${first}`)],
    ["v1 header with add lines", text.replace("unibus/membership/v2", "unibus/membership/v1")],
    ["v2 create without adds", text.replace(`${first}\n${second}\n`, "")],
    [
      "v2 add of one member",
      addText.replace(`${second.includes(bob.signPubHex) ? second : first}\n`, ""),
    ],
    [
      "v2 add with a member line",
      addText.replace("epoch: 1", `member: ${dave.signPubHex}\nepoch: 1`),
    ],
    ["v2 remove", addText.replace("op: add", "op: remove")],
    ["add with a bad role", text.replace(`${first}`, first.replace(/ (admin|member)$/, " owner"))],
    ["add with an extra token", text.replace(`${first}`, `${first} x`)],
    [
      "add with uppercase hex",
      text.replace(`${first}`, first.toUpperCase().replace("ADD:", "add:")),
    ],
    ["more than 128 members", text.replace(`${first}\n`, `${first}\n${many}\n`)],
  ];
  for (const [label, bad] of variants) {
    assert(bad !== text && bad !== addText, `${label} changes the text`);
    assert(
      (() => {
        try {
          parseChange(bad);
          return false;
        } catch (err) {
          return err instanceof MembershipError;
        }
      })(),
      label,
    );
  }
  assertEquals(changeText(parseChange(text)), text);
  assertEquals(changeText(parseChange(addText)), addText);
});
