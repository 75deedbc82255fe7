import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { DEFAULT_SKEW_MS } from "../lib/auth/request_signing.ts";
import { type KvStore, NONCE_MAX_AGE_MS, openKvStore } from "../lib/store/kv.ts";
import { InvalidInputError, StoreUnavailableError } from "../lib/store/store.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { type NatsServerUnderTest, startNatsServer } from "./helpers/nats_server.ts";
import { key, storeContract } from "./store_contract.ts";

// The contract, unchanged, on a real nats-server with JetStream: one server
// (and so one set of buckets) per case, as each case needs a fresh store.
storeContract("kv", async () => {
  const ns = await startNatsServer();
  const opened: Array<{ close(): Promise<void> }> = [];
  const open = async () => {
    const nc = await ns.connect();
    const store = await openKvStore({ nc, replicas: 1, ownsConnection: true });
    opened.push(store);
    return store;
  };
  const store = await open();
  return {
    store,
    another: open,
    cleanup: async () => {
      for (const s of opened) await s.close();
      await ns.stop({ remove: true });
    },
  };
});

/** A fresh KV store on its own nats-server; `fn` also gets raw KV access. */
async function withKv(
  fn: (ctx: { store: KvStore; raw: Kvm; ns: NatsServerUnderTest }) => Promise<void>,
): Promise<void> {
  const ns = await startNatsServer();
  let nc: NatsConnection | null = null;
  let rawNc: NatsConnection | null = null;
  let store: KvStore | null = null;
  try {
    nc = await ns.connect();
    rawNc = await ns.connect();
    store = await openKvStore({ nc, replicas: 1, ownsConnection: true, opTimeoutMs: 1000 });
    await fn({ store, raw: new Kvm(rawNc), ns });
  } finally {
    await store?.close();
    await nc?.close().catch(() => {});
    await rawNc?.close().catch(() => {});
    await ns.stop({ remove: true });
  }
}

const A = key(1);
const B = key(2);
const te = new TextEncoder();
const room = (id: string, subject = `room.${id}`) => ({
  id,
  subject,
  policy: { encrypt: true, sign: true, persist: false },
  createdBy: A,
});

Deno.test("kv store: buckets are named as the runbook names them, on file storage, R1", async () => {
  await withKv(async ({ ns }) => {
    const nc = await ns.connect();
    try {
      const jsm = await jetstreamManager(nc);
      const names: string[] = [];
      for await (const si of jsm.streams.list()) {
        names.push(si.config.name);
        assertEquals(si.config.storage, "file", si.config.name);
        assertEquals(si.config.num_replicas, 1, si.config.name);
      }
      for (
        const b of [
          "KV_UNIBUS_users",
          "KV_UNIBUS_rooms",
          "KV_UNIBUS_members",
          "KV_UNIBUS_room_keys",
          "KV_UNIBUS_rooms_by_member",
          "KV_UNIBUS_nonces",
          "OBJ_UNIBUS_blobs",
        ]
      ) assert(names.includes(b), `${b} missing from ${names}`);
      const nonces = await jsm.streams.info("KV_UNIBUS_nonces");
      // At least twice the signed-request clock window (±skew = 2 × skew wide).
      const maxAgeMs = nonces.config.max_age / 1e6;
      assert(maxAgeMs >= 2 * 2 * DEFAULT_SKEW_MS, `nonce max age ${maxAgeMs} ms`);
      assertEquals(maxAgeMs, NONCE_MAX_AGE_MS);
    } finally {
      await nc.close();
    }
  });
});

Deno.test("kv store: a stale rooms_by_member entry grants nothing", async () => {
  await withKv(async ({ store, raw }) => {
    await store.createRoom(room("ops"));
    // As if a writer added the hint, then stopped before the member set.
    const idx = await raw.open("UNIBUS_rooms_by_member");
    await idx.put(B, te.encode(JSON.stringify(["ops"])));
    assertEquals(await store.listRoomsForMember(B), []);
    assertEquals(await store.getMember("ops", B), null);
  });
});

Deno.test("kv store: a half-created room is invisible and frees its id and subject", async () => {
  await withKv(async ({ store, raw }) => {
    const rooms = await raw.open("UNIBUS_rooms");
    const members = await raw.open("UNIBUS_members");
    const idx = await raw.open("UNIBUS_rooms_by_member");
    // A creation that wrote its children and subject claim, then crashed.
    const subjectKey = `subject.${btoa("room.ops").replace(/=+$/, "")}`;
    await members.put(
      "ops.deadbeefdeadbeef",
      te.encode(JSON.stringify({
        seq: 0,
        change: null,
        members: [{ signPub: B, role: "admin", addedBy: B, addedAt: 1, change: null }],
      })),
    );
    await idx.put(B, te.encode(JSON.stringify(["ops"])));
    await rooms.put(subjectKey, te.encode(JSON.stringify({ id: "ops", inc: "deadbeefdeadbeef" })));
    assertEquals(await store.getRoomBySubject("room.ops"), null);
    assertEquals(await store.listRoomsForMember(B), []);
    // Another crash: an id record whose subject claim never landed.
    await rooms.put(
      "id.dev",
      te.encode(
        JSON.stringify({ ...room("dev"), createdAt: 1, epoch: 0, inc: "0011223344556677" }),
      ),
    );
    assertEquals(await store.getRoom("dev"), null);
    // Both are reclaimed by a real creation, which starts empty.
    await store.createRoom(room("ops"));
    await store.createRoom(room("dev"));
    assertEquals(await store.listMembers("ops"), []);
    assertEquals((await store.getRoomBySubject("room.ops"))?.id, "ops");
    assertEquals((await store.getRoom("dev"))?.subject, "room.dev");
  });
});

Deno.test("kv store: an interrupted deletion leaves nothing to a re-created room", async () => {
  await withKv(async ({ store, raw }) => {
    await store.createRoom(room("ops"), {
      change: { text: "g\n", sig: "AAAA" },
      members: [{ signPub: B, role: "admin", addedBy: B, change: null }],
    });
    await store.putSealedKeys("ops", 0, [{ recipient: B, sealed: "AAAA", sealedBy: B }]);
    await store.putBlob({ id: "b1", roomId: "ops", owner: B, data: new Uint8Array([1]) });
    // The deletion's first write only (the id record), then a crash.
    const rooms = await raw.open("UNIBUS_rooms");
    await rooms.delete("id.ops");
    await store.createRoom(room("ops"));
    assertEquals(await store.listMembers("ops"), []);
    assertEquals(await store.listRoomChanges("ops"), []);
    assertEquals(await store.getSealedKey("ops", 0, B), null);
    assertEquals(await store.getBlobMeta("b1"), null);
    assertEquals(await store.listRoomsForMember(B), []);
  });
});

Deno.test("kv store: quota counts read the user's own hints, and a stale or forged hint counts nothing", async () => {
  await withKv(async ({ store, raw }) => {
    await store.createRoom(room("ops"));
    await store.createRoom({
      ...room("log"),
      policy: { encrypt: true, sign: true, persist: true },
    });
    await store.createRoom({ ...room("bs"), createdBy: B });
    await store.putBlob({ id: "b1", roomId: "ops", owner: A, data: new Uint8Array(3) });
    await store.putBlob({ id: "b2", roomId: "bs", owner: B, data: new Uint8Array(5) });
    const rooms = await raw.open("UNIBUS_rooms");
    const meta = await raw.open("UNIBUS_blob_meta");
    const hints = async (kv: typeof rooms, filter: string) => {
      const out: string[] = [];
      for await (const k of await kv.keys(filter)) out.push(k);
      return out.sort();
    };
    // One hint per record, under its own user.
    assertEquals((await hints(rooms, `creator.${A}.>`)).length, 2);
    assertEquals((await hints(meta, `owner.${A}.>`)).length, 1);
    // Forged or stale hints: A named as creator of B's room, of a room that
    // never became visible, and as owner of B's blob; none counts.
    const inc = (await hints(rooms, `creator.${B}.>`))[0].split(".").pop();
    await rooms.put(`creator.${A}.bs.${inc}`, te.encode("{}"));
    await rooms.put(`creator.${A}.ghost.0011223344556677`, te.encode("{}"));
    const object = (await hints(meta, `owner.${B}.>`))[0].split(".").slice(2).join(".");
    await meta.put(`owner.${A}.${object}`, te.encode("{}"));
    assertEquals(await store.countRoomsCreatedBy(A), { rooms: 2, persisted: 1 });
    assertEquals(await store.blobUsageOf(A), { count: 1, bytes: 3 });
    // A deletion interrupted after its first write leaves A's hints stale.
    await rooms.delete("id.ops");
    assertEquals(await store.countRoomsCreatedBy(A), { rooms: 1, persisted: 1 });
    assertEquals(await store.blobUsageOf(A), { count: 0, bytes: 0 });
    // A finished deletion takes its hints with it.
    await store.deleteRoom("log");
    assertEquals(await hints(rooms, `creator.${A}.log.>`), []);
    await store.deleteBlob("b2");
    assertEquals(await hints(meta, `owner.${B}.>`), []);
  });
});

Deno.test("kv store: rooms and blobs stored before quota hints get them when the store opens", async () => {
  await withKv(async ({ store, raw, ns }) => {
    await store.createRoom(room("ops"));
    await store.putBlob({ id: "b1", roomId: "ops", owner: A, data: new Uint8Array(4) });
    // As an older unibus left them: no hints, no marker.
    const rooms = await raw.open("UNIBUS_rooms");
    const meta = await raw.open("UNIBUS_blob_meta");
    for await (const k of await rooms.keys("creator.>")) await rooms.purge(k);
    for await (const k of await meta.keys("owner.>")) await meta.purge(k);
    await meta.purge("quota_hints.v1");
    assertEquals(await store.countRoomsCreatedBy(A), { rooms: 0, persisted: 0 });
    const nc = await ns.connect();
    const reopened = await openKvStore({ nc, replicas: 1, ownsConnection: true });
    try {
      assertEquals(await reopened.countRoomsCreatedBy(A), { rooms: 1, persisted: 0 });
      assertEquals(await reopened.blobUsageOf(A), { count: 1, bytes: 4 });
    } finally {
      await reopened.close();
    }
  });
});

Deno.test("kv store: pruning lists expiry slots, keeps a reused nonce, and drops stale hints", async () => {
  await withKv(async ({ store, raw }) => {
    const nonces = await raw.open("UNIBUS_nonces");
    const now = Date.now();
    assert(await store.rememberNonce("a", now + 1000, now));
    assert(await store.rememberNonce("b", now + 60_000, now));
    // "a" expires and is reused in a later slot; its first hint is stale.
    assert(await store.rememberNonce("a", now + 90_000, now + 2000));
    assertEquals(await store.pruneNonces(now + 30_000), 0);
    assertEquals(await store.rememberNonce("a", now + 95_000, now + 30_000), false);
    const left: string[] = [];
    for await (const k of await nonces.keys("exp.>")) left.push(k);
    assertEquals(left.length, 2, JSON.stringify(left)); // the stale hint is gone
    assertEquals(await store.pruneNonces(now + 100_000), 2);
    assertEquals(await store.rememberNonce("b", now + 160_000, now + 100_000), true);
  });
});

Deno.test("kv store: a change whose log key was never written is restored from the member set", async () => {
  await withKv(async ({ store, raw }) => {
    const c0 = { text: "c0\n", sig: "AAAA" };
    const c1 = { text: "c1\n", sig: "AQ==" };
    await store.createRoom(room("ops"), { change: c0, members: [] });
    await store.applyRoomChange("ops", 1, c1, { members: [], epoch: 0 });
    const changes = await raw.open("UNIBUS_room_changes");
    const keys: string[] = [];
    for await (const k of await changes.keys("ops.*.1")) keys.push(k);
    assertEquals(keys.length, 1);
    await changes.purge(keys[0]); // as if the writer stopped after the member set
    assertEquals((await store.listRoomChanges("ops")).map((c) => c.text), ["c0\n", "c1\n"]);
    await store.applyRoomChange("ops", 2, { text: "c2\n", sig: "Ag==" }, {
      members: [],
      epoch: 0,
    });
    assertEquals((await changes.get(keys[0]))?.operation, "PUT");
    assertEquals((await store.listRoomChanges("ops")).length, 3);
  });
});

Deno.test("kv store: a nonce too long-lived for the bucket's max age is refused", async () => {
  await withKv(async ({ store }) => {
    const now = Date.now();
    await assertRejects(
      () => store.rememberNonce("n", now + NONCE_MAX_AGE_MS + 1, now),
      InvalidInputError,
    );
    assert(await store.rememberNonce("n", now + NONCE_MAX_AGE_MS, now));
  });
});

Deno.test("kv store: without its nats-server it fails with StoreUnavailableError, then recovers", async () => {
  await withKv(async ({ store, ns }) => {
    await store.addUser({ signPub: A, kexPub: null, kexSig: null, handle: "a", role: "admin" });
    await ns.stop();
    const t0 = Date.now();
    await assertRejects(() => store.getUser(A), StoreUnavailableError);
    await assertRejects(() => store.rememberNonce("n1", Date.now() + 1000), StoreUnavailableError);
    assert(Date.now() - t0 < 5000, `unavailable took ${Date.now() - t0} ms`);
    await ns.restart();
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        assertEquals((await store.getUser(A))?.handle, "a");
        break;
      } catch (err) {
        if (!(err instanceof StoreUnavailableError) || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    assert(await store.rememberNonce("n2", Date.now() + 1000));
  });
});

Deno.test("kv store: an unreachable JetStream fails bootstrap within its budget", async () => {
  const ns = await startNatsServer();
  const nc = await ns.connect();
  await ns.stop({ remove: true });
  const t0 = Date.now();
  try {
    await assertRejects(
      () => openKvStore({ nc, replicas: 1, bootstrapTimeoutMs: 1500 }),
      StoreUnavailableError,
      "cannot open",
    );
    assert(Date.now() - t0 < 10_000);
  } finally {
    await nc.close().catch(() => {});
  }
});
