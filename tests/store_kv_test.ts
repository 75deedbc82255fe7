import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
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
  const nc = await ns.connect();
  const rawNc = await ns.connect();
  let store: KvStore | null = null;
  try {
    store = await openKvStore({ nc, replicas: 1, ownsConnection: true, opTimeoutMs: 1000 });
    await fn({ store, raw: new Kvm(rawNc), ns });
  } finally {
    await store?.close();
    await nc.close().catch(() => {});
    await rawNc.close().catch(() => {});
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
