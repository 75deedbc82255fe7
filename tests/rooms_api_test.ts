/**
 * The rooms API against a real `serve --bus-auth enforce`: signed HTTP,
 * signed membership changes, real SQLite, real nats-server and JetStream.
 */

import { accountUser } from "../server/nats/account_users.ts";
import { jetstreamManager } from "@nats-io/jetstream";
import { inboxPrefixFor, roomStreamName } from "../lib/auth/acl.ts";
import { nkeyAuthenticatorFor } from "../lib/auth/nkey.ts";
import { toBase64, utf8 } from "../lib/e2e/bytes.ts";
import { signChange, type SignedChange, verifyLog } from "../lib/e2e/membership.ts";
import { generateIdentity, Identity, loadOrCreateIdentity } from "../lib/identity/identity.ts";
import { REFRESH_NOTICE_SUFFIX } from "../server/auth/enforcer.ts";
import type { RoomView } from "../server/rooms/state.ts";
import { ROOM_STREAM_MAX_AGE_MS } from "../server/rooms/streams.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "./helpers/assert.ts";
import { addBusUser, connectAs, strangerUser, subscribeDenied } from "./helpers/bus.ts";
import {
  as,
  bulkAdd,
  type Bus,
  genesis,
  newRoomId,
  nextChange,
  startBus,
  stopBus,
  within,
} from "./helpers/rooms_api.ts";

/** A fresh identity with the same signing key but another X25519 key (validly bound). */
function sameSignerOtherKex(id: Identity): Identity {
  return new Identity(id.signSeed, crypto.getRandomValues(new Uint8Array(32)), "twin");
}

async function createRoom(bus: Bus, who: Identity, subject: string, persist = false) {
  const res = await as(bus, who).post<RoomView>("/v1/rooms", {
    change: genesis(who, { subject, persist }),
  });
  assertEquals(res.status, 201, JSON.stringify(res.body));
  return res.body;
}

async function postChange(bus: Bus, who: Identity, id: string, change: SignedChange) {
  return await as(bus, who).post<RoomView & { error?: string; message?: string }>(
    `/v1/rooms/${id}/changes`,
    { change },
  );
}

Deno.test("a room is created from a signed genesis and read back by its member only", async (t) => {
  const bus = await startBus();
  try {
    const alice = (await addBusUser(bus.store, "alice")).identity;
    const bob = (await addBusUser(bus.store, "bob")).identity;
    const view = await createRoom(bus, alice, "chat.ops");

    await t.step("the view shows the creator as admin at epoch 0 and the signed log", () => {
      assertMatch(view.id, /^[0-9a-f]{32}$/);
      assertEquals(view.subject, "chat.ops");
      assertEquals(view.policy, { encrypt: true, sign: true, persist: false });
      assertEquals(view.epoch, 0);
      assertEquals(view.createdBy, alice.signPubHex);
      assertEquals(view.members, [{ signPub: alice.signPubHex, role: "admin" }]);
      assertEquals(view.changes.length, 1);
      assertEquals(view.stream, null);
      // A client can verify what the server returned on its own.
      assertEquals(verifyLog(view.id, view.changes).members.has(alice.signPubHex), true);
    });

    await t.step("the member reads it by id, by subject and in its room list", async () => {
      const a = as(bus, alice);
      assertEquals((await a.get<RoomView>(`/v1/rooms/${view.id}`)).body, view);
      assertEquals((await a.get<RoomView>(`/v1/rooms/by-subject/chat.ops`)).body, view);
      assertEquals((await a.get("/v1/rooms")).body, { rooms: [view] });
    });

    await t.step("a non-member gets 404, exactly as for a room that does not exist", async () => {
      const b = as(bus, bob);
      for (
        const path of [
          `/v1/rooms/${view.id}`,
          `/v1/rooms/by-subject/chat.ops`,
          `/v1/rooms/${newRoomId()}`,
          `/v1/rooms/by-subject/no.such.room`,
          `/v1/rooms/not-an-id`,
        ]
      ) {
        const res = await b.get(path);
        assertEquals(res.status, 404, path);
        assertEquals(res.body.error, "not_found", path);
      }
      assertEquals((await b.get("/v1/rooms")).body, { rooms: [] });
    });

    await t.step("a lookup by a subject outside the grammar is 400 invalid_subject", async () => {
      for (const [subject, rule] of [["bad..subject", "empty_token"], ["chat.*", "wildcard"]]) {
        const res = await as(bus, bob).get(`/v1/rooms/by-subject/${encodeURIComponent(subject)}`);
        assertEquals([res.status, res.body.error, res.body.rule], [400, "invalid_subject", rule]);
      }
    });

    await t.step("a second room on the same subject is 409 subject_taken", async () => {
      const res = await as(bus, bob).post("/v1/rooms", {
        change: genesis(bob, { subject: "chat.ops" }),
      });
      assertEquals([res.status, res.body.error], [409, "subject_taken"]);
    });

    await t.step("the same room id again is 409 room_exists", async () => {
      const res = await as(bus, bob).post("/v1/rooms", {
        change: genesis(bob, { subject: "chat.other", room: view.id }),
      });
      assertEquals([res.status, res.body.error], [409, "room_exists"]);
    });

    await t.step(
      "a genesis posted by someone other than its signer is 403 not_signer",
      async () => {
        const res = await as(bus, bob).post("/v1/rooms", {
          change: genesis(alice, { subject: "chat.stolen" }),
        });
        assertEquals([res.status, res.body.error], [403, "not_signer"]);
      },
    );

    await t.step("a genesis with a forged signature is 400 invalid_change", async () => {
      const real = genesis(alice, { subject: "chat.forged" });
      // Bob's signature over Alice's text: well-formed, but not by `by`.
      const bobSig = toBase64(bob.signer.sign(utf8(real.text)));
      for (const change of [{ ...real, sig: bobSig }, { ...real, sig: "AAAA" }]) {
        const res = await as(bus, alice).post("/v1/rooms", { change });
        assertEquals([res.status, res.body.error], [400, "invalid_change"]);
      }
    });

    await t.step(
      "a genesis naming another key-exchange key than the registered one is 400 kex_mismatch",
      async () => {
        const twin = sameSignerOtherKex(alice);
        const res = await as(bus, alice).post("/v1/rooms", {
          change: genesis(twin, { subject: "chat.twin" }),
        });
        assertEquals([res.status, res.body.error], [400, "kex_mismatch"]);
      },
    );

    await t.step("bad room ids and subjects are refused, reserved ones included", async () => {
      const cases: Array<[{ subject: string; room?: string }, string, string?]> = [
        [{ subject: "chat.x", room: "ABCDEF0123456789ABCDEF0123456789" }, "invalid_room_id"],
        [{ subject: "chat.x", room: "ops" }, "invalid_room_id"],
        [{ subject: "chat.*" }, "invalid_subject", "wildcard"],
        [{ subject: "chat.>" }, "invalid_subject", "wildcard"],
        [{ subject: "chat..x" }, "invalid_subject", "empty_token"],
        [
          { subject: `$JS.API.STREAM.PURGE.${roomStreamName(view.id)}` },
          "invalid_subject",
          "reserved_prefix",
        ],
        [
          { subject: `_INBOX.${bob.signPubHex}.unibus.refresh` },
          "invalid_subject",
          "reserved_prefix",
        ],
        [{ subject: "$SYS.REQ.SERVER.PING" }, "invalid_subject", "reserved_prefix"],
      ];
      for (const [opts, code, rule] of cases) {
        const res = await as(bus, alice).post("/v1/rooms", { change: genesis(alice, opts) });
        assertEquals(
          [res.status, res.body.error, res.body.rule],
          [400, code, rule],
          JSON.stringify(opts),
        );
      }
      assertEquals(
        (await as(bus, alice).get<{ rooms: unknown[] }>("/v1/rooms")).body.rooms.length,
        1,
      );
    });

    await t.step(
      "a creator without a registered kex gets it registered from the genesis",
      async () => {
        const carol = generateIdentity("carol");
        await bus.store.addUser({
          signPub: carol.signPubHex,
          kexPub: null,
          kexSig: null,
          handle: "carol",
          role: "member",
        });
        await createRoom(bus, carol, "chat.carol");
        const user = await as(bus, carol).get(`/v1/users/${carol.signPubHex}`);
        assertEquals(user.body.kexPub, carol.kexPubHex);
        assertEquals(user.body.kexSig, carol.kexSigHex);
      },
    );

    await t.step("malformed bodies are 400, never 500", async () => {
      const a = as(bus, alice);
      const bodies: unknown[] = [
        "{not json",
        "[]",
        "null",
        {},
        { change: null },
        { change: "text" },
        { change: { text: 1, sig: "AAAA" } },
        { change: { text: "hello\n", sig: "AAAA" } },
        { change: { text: genesis(alice, { subject: "x.y" }).text } },
      ];
      for (const body of bodies) {
        const res = await a.post("/v1/rooms", body);
        assertEquals(res.status, 400, JSON.stringify(body));
        assert(typeof res.body.error === "string" && typeof res.body.message === "string");
      }
      for (const body of ["{", {}, { change: { text: "x", sig: "y" } }]) {
        const res = await a.post(`/v1/rooms/${view.id}/changes`, body);
        assertEquals(res.status, 400, JSON.stringify(body));
      }
    });
  } finally {
    await stopBus(bus);
  }
});

Deno.test("membership changes follow the signed-log rules and the server's own checks", async (t) => {
  const bus = await startBus();
  try {
    const alice = (await addBusUser(bus.store, "alice")).identity;
    const bob = (await addBusUser(bus.store, "bob")).identity;
    const carol = (await addBusUser(bus.store, "carol")).identity;
    const dave = (await addBusUser(bus.store, "dave")).identity;
    let view = await createRoom(bus, alice, "team.chat");
    const id = view.id;

    await t.step("an admin adds a member: epoch 1, and the member can read the room", async () => {
      const res = await postChange(bus, alice, id, nextChange(view, alice, "add", bob));
      assertEquals(res.status, 200, JSON.stringify(res.body));
      view = res.body;
      assertEquals(view.epoch, 1);
      assertEquals(
        view.members.map((m) => [m.signPub, m.role]).sort(),
        [
          [alice.signPubHex, "admin"],
          [bob.signPubHex, "member"],
        ].sort(),
      );
      assertEquals(view.changes.length, 2);
      assertEquals((await as(bus, bob).get<RoomView>(`/v1/rooms/${id}`)).body, view);
      assertEquals((await bus.store.getRoom(id))?.epoch, 1);
    });

    await t.step("a change signed by a non-admin member is 400 invalid_change", async () => {
      const res = await postChange(bus, bob, id, nextChange(view, bob, "add", carol));
      assertEquals([res.status, res.body.error], [400, "invalid_change"]);
      assertMatch(String(res.body.message), /not an admin/);
    });

    await t.step(
      "a valid change posted by someone other than its signer is 403 not_signer",
      async () => {
        const res = await postChange(bus, bob, id, nextChange(view, alice, "add", carol));
        assertEquals([res.status, res.body.error], [403, "not_signer"]);
      },
    );

    await t.step("a change with a forged signature is 400 invalid_change", async () => {
      const real = nextChange(view, alice, "add", carol);
      const forged = { text: real.text, sig: nextChange(view, alice, "add", dave).sig };
      const res = await postChange(bus, alice, id, forged);
      assertEquals([res.status, res.body.error], [400, "invalid_change"]);
    });

    await t.step("adding a key that is not on the allowlist is 400 unknown_member", async () => {
      const stranger = strangerUser().identity;
      const res = await postChange(bus, alice, id, nextChange(view, alice, "add", stranger));
      assertEquals([res.status, res.body.error], [400, "unknown_member"]);
      const revoked = (await addBusUser(bus.store, "revoked")).identity;
      await bus.store.revokeUser(revoked.signPubHex);
      const res2 = await postChange(bus, alice, id, nextChange(view, alice, "add", revoked));
      assertEquals([res2.status, res2.body.error], [400, "unknown_member"]);
    });

    await t.step(
      "an add naming another key-exchange key than the member's registered one is 400 kex_mismatch",
      async () => {
        const twin = sameSignerOtherKex(carol);
        const res = await postChange(bus, alice, id, nextChange(view, alice, "add", twin));
        assertEquals([res.status, res.body.error], [400, "kex_mismatch"]);
        // And a kex whose binding is not carol's fails the log rules outright.
        const swapped = {
          signPubHex: carol.signPubHex,
          kexPubHex: dave.kexPubHex,
          kexSigHex: dave.kexSigHex,
        };
        const res2 = await postChange(bus, alice, id, nextChange(view, alice, "add", swapped));
        assertEquals([res2.status, res2.body.error], [400, "invalid_change"]);
        assertEquals((await as(bus, alice).get<RoomView>(`/v1/rooms/${id}`)).body, view);
      },
    );

    await t.step("of two changes made from the same state the second is 409 conflict", async () => {
      const first = nextChange(view, alice, "add", carol);
      const second = nextChange(view, alice, "add", dave);
      const ok = await postChange(bus, alice, id, first);
      assertEquals(ok.status, 200);
      const stale = await postChange(bus, alice, id, second);
      assertEquals([stale.status, stale.body.error], [409, "conflict"]);
      view = ok.body;
      assertEquals(view.epoch, 2);
      assert(!view.members.some((m) => m.signPub === dave.signPubHex));
    });

    await t.step("concurrent changes for one seq: exactly one wins, the rest are 409", async () => {
      const eve = (await addBusUser(bus.store, "eve")).identity;
      const candidates = [dave, eve];
      const results = await Promise.all(
        candidates.map((m) => postChange(bus, alice, id, nextChange(view, alice, "add", m))),
      );
      assertEquals(results.map((r) => r.status).sort(), [200, 409]);
      view = results.find((r) => r.status === 200)!.body;
      assertEquals(view.epoch, 3);
      assertEquals(view.members.length, 4);
    });

    await t.step("a non-member's change is 404", async () => {
      const frank = (await addBusUser(bus.store, "frank")).identity;
      const res = await postChange(bus, frank, id, nextChange(view, frank, "add", frank));
      assertEquals([res.status, res.body.error], [404, "not_found"]);
    });

    await t.step("removing a member starts a new epoch and drops their access", async () => {
      const res = await postChange(bus, alice, id, nextChange(view, alice, "remove", bob));
      assertEquals(res.status, 200, JSON.stringify(res.body));
      const before = view.epoch;
      view = res.body;
      assertEquals(view.epoch, before + 1);
      assert(!view.members.some((m) => m.signPub === bob.signPubHex));
      assertEquals((await as(bus, bob).get(`/v1/rooms/${id}`)).status, 404);
      assertEquals(await bus.store.getMember(id, bob.signPubHex), null);
      // The log the server stores still verifies for any client.
      const state = verifyLog(id, view.changes);
      assertEquals(state.epoch, view.epoch);
      assertEquals([...state.members.keys()].sort(), view.members.map((m) => m.signPub).sort());
    });

    await t.step("a member added as admin may change the room", async () => {
      const res = await postChange(bus, alice, id, nextChange(view, alice, "add", bob, "admin"));
      assertEquals(res.status, 200);
      view = res.body;
      const res2 = await postChange(bus, bob, id, nextChange(view, bob, "remove", carol));
      assertEquals(res2.status, 200, JSON.stringify(res2.body));
      view = res2.body;
      assertEquals(view.members.find((m) => m.signPub === bob.signPubHex)?.role, "admin");
    });
  } finally {
    await stopBus(bus);
  }
});

Deno.test("a room created with members, and members added in bulk, are one change each", async (t) => {
  const bus = await startBus();
  try {
    const [alice, bob, carol, dave, erin] = await Promise.all(
      ["alice", "bob", "carol", "dave", "erin"].map(async (h) =>
        (await addBusUser(bus.store, h)).identity
      ),
    );
    let view: RoomView;

    await t.step("a create naming members: one change, epoch 0, all of them members", async () => {
      const res = await as(bus, alice).post<RoomView>("/v1/rooms", {
        change: genesis(alice, { subject: "bulk.chat", members: [bob, carol] }),
      });
      assertEquals(res.status, 201, JSON.stringify(res.body));
      view = res.body;
      assertEquals([view.epoch, view.changes.length], [0, 1]);
      assertEquals(
        view.members.map((m) => [m.signPub, m.role]).sort(),
        [[alice.signPubHex, "admin"], [bob.signPubHex, "member"], [carol.signPubHex, "member"]]
          .sort(),
      );
      assertEquals((await as(bus, carol).get<RoomView>(`/v1/rooms/${view.id}`)).status, 200);
      // Each row points at the change by seq and hash, not a copy of it.
      const row = await bus.store.getMember(view.id, bob.signPubHex);
      assertEquals(JSON.parse(row!.change!).seq, 0);
    });

    await t.step("a bulk add: one change, one epoch more", async () => {
      const res = await postChange(bus, alice, view.id, bulkAdd(view, alice, [dave, erin]));
      assertEquals(res.status, 200, JSON.stringify(res.body));
      view = res.body;
      assertEquals([view.epoch, view.changes.length, view.members.length], [1, 2, 5]);
      assertEquals(verifyLog(view.id, view.changes).members.has(erin.signPubHex), true);
    });

    await t.step("one unknown or mismatched member refuses the whole change", async () => {
      const stranger = strangerUser().identity;
      const frank = (await addBusUser(bus.store, "frank")).identity;
      const res = await postChange(bus, alice, view.id, bulkAdd(view, alice, [frank, stranger]));
      assertEquals([res.status, res.body.error], [400, "unknown_member"]);
      const twin = sameSignerOtherKex(frank);
      const grace = (await addBusUser(bus.store, "grace")).identity;
      const res2 = await postChange(bus, alice, view.id, bulkAdd(view, alice, [grace, twin]));
      assertEquals([res2.status, res2.body.error], [400, "kex_mismatch"]);
      const created = await as(bus, alice).post("/v1/rooms", {
        change: genesis(alice, { subject: "bulk.other", members: [bob, stranger] }),
      });
      assertEquals([created.status, created.body.error], [400, "unknown_member"]);
      assertEquals(await bus.store.getRoomBySubject("bulk.other"), null);
      assertEquals((await as(bus, alice).get<RoomView>(`/v1/rooms/${view.id}`)).body, view);
    });
  } finally {
    await stopBus(bus);
  }
});

Deno.test("deleting a room: admins only, and it frees the subject", async (t) => {
  const bus = await startBus();
  try {
    const alice = (await addBusUser(bus.store, "alice")).identity;
    const bob = (await addBusUser(bus.store, "bob")).identity;
    const carol = (await addBusUser(bus.store, "carol")).identity;
    let view = await createRoom(bus, alice, "doomed.room");
    view = (await postChange(bus, alice, view.id, nextChange(view, alice, "add", bob))).body;

    await t.step("a member who is not an admin gets 403 not_admin", async () => {
      const res = await as(bus, bob).del(`/v1/rooms/${view.id}`);
      assertEquals([res.status, res.body?.error], [403, "not_admin"]);
    });

    await t.step("a non-member gets 404", async () => {
      const res = await as(bus, carol).del(`/v1/rooms/${view.id}`);
      assertEquals([res.status, res.body?.error], [404, "not_found"]);
    });

    await t.step("the admin deletes it: 204, then it is gone for everyone", async () => {
      const res = await as(bus, alice).del(`/v1/rooms/${view.id}`);
      assertEquals([res.status, res.body], [204, null]);
      assertEquals((await as(bus, alice).get(`/v1/rooms/${view.id}`)).status, 404);
      assertEquals((await as(bus, bob).get(`/v1/rooms/${view.id}`)).status, 404);
      assertEquals(await bus.store.listRoomChanges(view.id), []);
      assertEquals(await bus.store.listMembers(view.id), []);
      assertEquals((await as(bus, alice).del(`/v1/rooms/${view.id}`)).status, 404);
    });

    await t.step("the subject can be used by a new room", async () => {
      await createRoom(bus, carol, "doomed.room");
    });
  } finally {
    await stopBus(bus);
  }
});

Deno.test("a persisted room gets its JetStream stream, readable by members, deleted with the room", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-rooms-" });
  const idFile = `${dir}/internal.id.json`;
  const bus = await startBus(["--internal-id-file", idFile]);
  try {
    const alice = await addBusUser(bus.store, "alice");
    const view = await createRoom(bus, alice.identity, "history.room", true);
    const stream = roomStreamName(view.id);
    assertEquals(view.stream, stream);
    assertEquals(view.policy.persist, true);

    // A member publishes on the room's wire subject, acknowledged by its
    // stream, and reads it back by direct get (the ACL grants exactly that);
    // the stream's configuration is seen from the rooms' account, where it lives.
    const na = await connectAs(bus.s.natsPort, alice);
    const rooms = await connectAs(bus.s.natsPort, null, {
      authenticator: nkeyAuthenticatorFor(
        accountUser((await loadOrCreateIdentity(idFile)).signSeed, "rooms"),
      ),
    });
    try {
      const ack = await na.request(`$UNIBUS.ROOM.${view.id}`, "ciphertext", { timeout: 3000 });
      assertEquals(ack.json<{ stream: string; seq: number }>(), { stream, seq: 1 });
      const got = await na.request(`$JS.API.DIRECT.GET.${stream}`, '{"seq":1}', { timeout: 3000 });
      assertEquals(got.string(), "ciphertext");
      await assertRejects(
        () => na.request(`$JS.API.STREAM.INFO.${stream}`, "", { timeout: 1000 }),
        Error,
        "Permissions Violation",
      );
      const info = (await rooms.request(`$JS.API.STREAM.INFO.${stream}`, "", { timeout: 3000 }))
        .json<{ config: Record<string, unknown>; state: { messages: number } }>();
      assertEquals(info.config.name, stream);
      assertEquals(info.config.subjects, [`$UNIBUS.ROOM.${view.id}`]);
      assertEquals(info.config.storage, "file");
      assertEquals(info.config.discard, "old");
      assertEquals(info.config.num_replicas, 1);
      assertEquals(info.config.max_age, ROOM_STREAM_MAX_AGE_MS * 1_000_000);
      assertEquals(info.state.messages, 1);
    } finally {
      await na.close();
      await rooms.close();
    }

    assertEquals((await as(bus, alice.identity).del(`/v1/rooms/${view.id}`)).status, 204);
    // Checked with serve's own identity in the rooms' account: the member
    // lost its rights with the room.
    const nc = await connectAs(bus.s.natsPort, null, {
      authenticator: nkeyAuthenticatorFor(
        accountUser((await loadOrCreateIdentity(idFile)).signSeed, "rooms"),
      ),
    });
    try {
      const jsm = await jetstreamManager(nc);
      const names: string[] = [];
      for await (const name of jsm.streams.names()) names.push(name);
      assert(!names.includes(stream), `stream ${stream} still exists: ${names}`);
    } finally {
      await nc.close();
    }
  } finally {
    await stopBus(bus);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a removed member's live NATS connection is cut and an added one is told to refresh", async () => {
  const bus = await startBus();
  try {
    const alice = await addBusUser(bus.store, "alice");
    const bob = await addBusUser(bus.store, "bob");
    const carol = await addBusUser(bus.store, "carol");
    let view = await createRoom(bus, alice.identity, "live.room");
    view = (await postChange(
      bus,
      alice.identity,
      view.id,
      nextChange(view, alice.identity, "add", bob.identity),
    )).body;

    const nb = await connectAs(bus.s.natsPort, bob);
    const nc = await connectAs(bus.s.natsPort, carol);
    try {
      // Bob holds the room in his ACL: he can subscribe to it.
      nb.subscribe("live.room");
      await nb.flush();
      const notice = nc.subscribe(`${inboxPrefixFor(carol.hex)}.${REFRESH_NOTICE_SUFFIX}`, {
        max: 1,
      });
      await nc.flush();

      const added = await postChange(
        bus,
        alice.identity,
        view.id,
        nextChange(view, alice.identity, "add", carol.identity),
      );
      assertEquals(added.status, 200);
      view = added.body;
      const got = await within(
        3000,
        (async () => {
          for await (const m of notice) return m.string();
        })(),
      );
      assertEquals(got, "refresh");

      const removed = await postChange(
        bus,
        alice.identity,
        view.id,
        nextChange(view, alice.identity, "remove", bob.identity),
      );
      assertEquals(removed.status, 200);
      const closed = await within(3000, nb.closed().then(() => "closed"));
      assertEquals(closed, "closed", "bob's connection was not cut within 3 s");
    } finally {
      await nb.close().catch(() => {});
      await nc.close().catch(() => {});
    }
  } finally {
    await stopBus(bus);
  }
});

Deno.test("a genesis whose policy has encrypt without sign is 400 invalid_change (protocol.md §2.3)", async () => {
  const bus = await startBus();
  try {
    const alice = (await addBusUser(bus.store, "alice")).identity;
    for (const persist of [false, true]) {
      const change = signChange({
        room: newRoomId(),
        seq: 0,
        prev: "0".repeat(64),
        op: "create",
        subject: `enc.only.${persist}`,
        policy: { encrypt: true, sign: false, persist },
        member: alice.signPubHex,
        kex: alice.kexPubHex,
        kexSig: alice.kexSigHex,
        role: "admin",
        epoch: 0,
        by: alice.signPubHex,
        at: Date.now(),
      }, alice.signer);
      const res = await as(bus, alice).post<{ error: string; message: string }>("/v1/rooms", {
        change,
      });
      assertEquals([res.status, res.body.error], [400, "invalid_change"], JSON.stringify(res.body));
      assertMatch(res.body.message, /always signed/);
    }
    assertEquals((await as(bus, alice).get("/v1/rooms")).body, { rooms: [] });
  } finally {
    await stopBus(bus);
  }
});

Deno.test("the global role admin grants nothing over rooms: not another's room, not its subject", async () => {
  const bus = await startBus();
  try {
    const alice = await addBusUser(bus.store, "alice");
    const root = await addBusUser(bus.store, "root", "admin");
    const view = await createRoom(bus, alice.identity, "private.room");
    const r = as(bus, root.identity);
    for (const path of [`/v1/rooms/${view.id}`, "/v1/rooms/by-subject/private.room"]) {
      assertEquals((await r.get(path)).status, 404, path);
    }
    assertEquals((await r.get("/v1/rooms")).body, { rooms: [] });
    assertEquals((await r.del(`/v1/rooms/${view.id}`)).status, 404);
    const self = nextChange(view, root.identity, "add", root.identity);
    assertEquals((await postChange(bus, root.identity, view.id, self)).status, 404);
    // Nor on NATS: the ACL is the same as any non-member's.
    const nc = await connectAs(bus.s.natsPort, root);
    try {
      await subscribeDenied(nc, "private.room");
    } finally {
      await nc.close();
    }
    // The room is untouched.
    const still = await as(bus, alice.identity).get<RoomView>(`/v1/rooms/${view.id}`);
    assertEquals(still.body.members, [{ signPub: alice.hex, role: "admin" }]);
  } finally {
    await stopBus(bus);
  }
});
