/**
 * Quotas against a real `serve --bus-auth enforce` (issue 8, findings 3 and
 * 4): what one user may create and upload is bounded, the answer names the
 * limit and the use, and one user at a limit never stops another.
 */

import { accountUser } from "../server/nats/account_users.ts";
import { jetstreamManager } from "@nats-io/jetstream";
import { roomStreamName } from "../lib/auth/acl.ts";
import { nkeyAuthenticatorFor } from "../lib/auth/nkey.ts";
import { type Identity, loadOrCreateIdentity } from "../lib/identity/identity.ts";
import { DEFAULT_LIMITS } from "../server/limits.ts";
import type { RoomView } from "../server/rooms/state.ts";
import { assertEquals } from "./helpers/assert.ts";
import { addBusUser, connectAs } from "./helpers/bus.ts";
import { as, type Bus, genesis, nextChange, startBus, stopBus } from "./helpers/rooms_api.ts";

const MiB = 1024 * 1024;

interface QuotaError {
  error: string;
  message: string;
  limit: string;
  max: number;
  used: number;
}

function create(bus: Bus, who: Identity, subject: string, persist: boolean) {
  return as(bus, who).post<RoomView & Partial<QuotaError>>("/v1/rooms", {
    change: genesis(who, { subject, persist }),
  });
}

async function upload(bus: Bus, who: Identity, roomId: string, size: number) {
  const res = await as(bus, who).raw(`/v1/rooms/${roomId}/blobs`, {
    method: "POST",
    body: new Uint8Array(size),
    headers: { "content-type": "application/octet-stream" },
  });
  return { status: res.status, body: await res.json() };
}

Deno.test("persisted rooms: a user stops at the default quota with 429, another user still creates", async () => {
  const bus = await startBus();
  try {
    const alice = (await addBusUser(bus.store, "alice")).identity;
    const bob = (await addBusUser(bus.store, "bob")).identity;
    const max = DEFAULT_LIMITS.persistedRoomsPerUser;
    for (let i = 0; i < max; i++) {
      const res = await create(bus, alice, `alice.p${i}`, true);
      assertEquals(res.status, 201, JSON.stringify(res.body));
    }
    const refused = await create(bus, alice, "alice.one-more", true);
    assertEquals(refused.status, 429);
    assertEquals(refused.body, {
      error: "quota_exceeded",
      message: `quota persisted_rooms_per_user reached: ${max} used of ${max}`,
      limit: "persisted_rooms_per_user",
      max,
      used: max,
    } as unknown);
    // The refused room left nothing behind: no room, no subject taken.
    assertEquals(await bus.store.getRoomBySubject("alice.one-more"), null);
    // A room that does not persist reserves no JetStream and is still allowed.
    assertEquals((await create(bus, alice, "alice.plain", false)).status, 201);
    // Alice at her limit does not stop Bob.
    assertEquals((await create(bus, bob, "bob.p0", true)).status, 201);
  } finally {
    await stopBus(bus);
  }
});

Deno.test("a persisted room reserves --room-stream-max-bytes, and a full JetStream store is 507", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-quota-" });
  const idFile = `${dir}/internal.id.json`;
  // 256 MiB of JetStream holds four 64 MiB rooms.
  const bus = await startBus([
    "--internal-id-file",
    idFile,
    "--jetstream-max-store",
    "256MiB",
    "--room-stream-max-bytes",
    "64MiB",
    "--max-persisted-rooms-per-user",
    "2",
  ]);
  try {
    const users = await Promise.all(
      ["a", "b", "c"].map(async (h) => (await addBusUser(bus.store, h)).identity),
    );
    const ids: string[] = [];
    for (const [u, who] of users.slice(0, 2).entries()) {
      for (let i = 0; i < 2; i++) {
        const res = await create(bus, who, `u${u}.p${i}`, true);
        assertEquals(res.status, 201, JSON.stringify(res.body));
        ids.push(res.body.id);
      }
    }
    const full = await create(bus, users[2], "c.p0", true);
    assertEquals([full.status, full.body.error], [507, "storage_full"]);
    assertEquals(await bus.store.getRoomBySubject("c.p0"), null);

    // Seen from the rooms' account, where the streams live.
    const rooms = accountUser((await loadOrCreateIdentity(idFile)).signSeed, "rooms");
    const nc = await connectAs(bus.s.natsPort, null, {
      authenticator: nkeyAuthenticatorFor(rooms),
    });
    try {
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info(roomStreamName(ids[0]));
      assertEquals(info.config.max_bytes, 64 * MiB);
    } finally {
      await nc.close();
    }

    // Deleting a room gives its reservation back.
    assertEquals((await as(bus, users[0]).del(`/v1/rooms/${ids[0]}`)).status, 204);
    assertEquals((await create(bus, users[2], "c.p0", true)).status, 201);
  } finally {
    await stopBus(bus);
    await Deno.remove(dir, { recursive: true });
  }
});

// On KV the counts come from the creator/owner hints (lib/store/kv.ts, invariant 5).
for (const kind of ["sqlite", "kv"] as const) {
  Deno.test(`rooms: --max-rooms-per-user counts every room a user created, deleted ones free a place (${kind})`, async () => {
    const bus = await startBus(["--max-rooms-per-user", "2"], kind);
    try {
      const alice = (await addBusUser(bus.store, "alice")).identity;
      const bob = (await addBusUser(bus.store, "bob")).identity;
      const first = await create(bus, alice, "a.0", false);
      assertEquals((await create(bus, alice, "a.1", true)).status, 201);
      const refused = await create(bus, alice, "a.2", false);
      assertEquals([refused.status, refused.body.error], [429, "quota_exceeded"]);
      assertEquals(
        [refused.body.limit, refused.body.max, refused.body.used] as unknown[],
        ["rooms_per_user", 2, 2],
      );
      assertEquals((await create(bus, bob, "b.0", false)).status, 201);
      assertEquals((await as(bus, alice).del(`/v1/rooms/${first.body.id}`)).status, 204);
      assertEquals((await create(bus, alice, "a.2", false)).status, 201);
    } finally {
      await stopBus(bus);
    }
  });

  Deno.test(`blobs: count and bytes per user are bounded (429 naming the quota), other users unaffected (${kind})`, async () => {
    const bus = await startBus(
      ["--max-blobs-per-user", "3", "--max-blob-bytes-per-user", "20MiB"],
      kind,
    );
    try {
      const alice = (await addBusUser(bus.store, "alice")).identity;
      const bob = (await addBusUser(bus.store, "bob")).identity;
      const ra = (await create(bus, alice, "blobs.a", false)).body.id;
      const rb = (await create(bus, bob, "blobs.b", false)).body.id;

      // Bytes: two 8 MiB blobs fit in 20 MiB, a third does not.
      assertEquals((await upload(bus, alice, ra, 8 * MiB)).status, 201);
      assertEquals((await upload(bus, alice, ra, 8 * MiB)).status, 201);
      const bytes = await upload(bus, alice, ra, 8 * MiB);
      assertEquals(bytes.status, 429);
      assertEquals(
        [bytes.body.error, bytes.body.limit, bytes.body.max, bytes.body.used],
        ["quota_exceeded", "blob_bytes_per_user", 20 * MiB, 16 * MiB],
      );
      // What still fits is accepted; then the count is the limit.
      assertEquals((await upload(bus, alice, ra, 1024)).status, 201);
      const count = await upload(bus, alice, ra, 1);
      assertEquals(
        [count.status, count.body.limit, count.body.max, count.body.used],
        [429, "blobs_per_user", 3, 3],
      );
      assertEquals(await bus.store.blobUsageOf(alice.signPubHex), {
        count: 3,
        bytes: 16 * MiB + 1024,
      });
      // Bob is not held back by Alice's use.
      assertEquals((await upload(bus, bob, rb, 8 * MiB)).status, 201);
    } finally {
      await stopBus(bus);
    }
  });
}

/** Applies the next change of `roomId` signed by `by`; asserts 200 and returns the new view. */
async function change(
  bus: Bus,
  by: Identity,
  roomId: string,
  op: "add" | "remove",
  member: Identity,
  role: "admin" | "member" = "member",
): Promise<RoomView> {
  const view = (await as(bus, by).get<RoomView>(`/v1/rooms/${roomId}`)).body;
  const res = await as(bus, by).post<RoomView>(`/v1/rooms/${roomId}/changes`, {
    change: nextChange(view, by, op, member, role),
  });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

Deno.test("a creator who left still counts its room, and may delete it to free the place", async () => {
  const bus = await startBus(["--max-rooms-per-user", "1"]);
  try {
    const alice = (await addBusUser(bus.store, "alice")).identity;
    const bob = (await addBusUser(bus.store, "bob")).identity;
    const carol = (await addBusUser(bus.store, "carol")).identity;
    const room = (await create(bus, alice, "left.behind", false)).body.id;
    await change(bus, alice, room, "add", bob, "admin");
    await change(bus, alice, room, "remove", alice); // alice leaves
    // Still hers for the quota: leaving must not shed it (add an admin,
    // leave, repeat would make rooms without bound).
    const refused = await create(bus, alice, "left.next", false);
    assertEquals(
      [refused.status, refused.body.limit, refused.body.used] as unknown[],
      [429, "rooms_per_user", 1],
    );
    // Someone who neither made the room nor is in it learns nothing.
    assertEquals((await as(bus, carol).del(`/v1/rooms/${room}`)).status, 404);
    // The creator, no longer a member, may delete it; the place is free.
    assertEquals((await as(bus, alice).del(`/v1/rooms/${room}`)).status, 204);
    assertEquals((await as(bus, bob).get(`/v1/rooms/${room}`)).status, 404);
    assertEquals((await create(bus, alice, "left.next", false)).status, 201);
  } finally {
    await stopBus(bus);
  }
});

Deno.test("DELETE /v1/blobs/:id: the uploader (also after leaving) or a room admin; the quota follows", async () => {
  const bus = await startBus(["--max-blobs-per-user", "1"]);
  try {
    const alice = (await addBusUser(bus.store, "alice")).identity;
    const bob = (await addBusUser(bus.store, "bob")).identity;
    const carol = (await addBusUser(bus.store, "carol")).identity;
    const dave = (await addBusUser(bus.store, "dave")).identity;
    const room = (await create(bus, alice, "blobs.shared", false)).body.id;
    await change(bus, alice, room, "add", bob);
    await change(bus, alice, room, "add", carol);
    const b1 = await upload(bus, bob, room, 100);
    const b2 = await upload(bus, carol, room, 200);
    assertEquals([b1.status, b2.status], [201, 201]);
    assertEquals((await upload(bus, bob, room, 1)).body.limit, "blobs_per_user");

    // A member who is neither the uploader nor an admin: 403; not in the room: 404.
    const byCarol = await as(bus, carol).del(`/v1/blobs/${b1.body.id}`);
    assertEquals([byCarol.status, byCarol.body?.error], [403, "not_allowed"]);
    assertEquals((await as(bus, dave).del(`/v1/blobs/${b1.body.id}`)).status, 404);
    assertEquals((await as(bus, bob).del(`/v1/blobs/${"0".repeat(32)}`)).status, 404);

    // Bob leaves; his blob still counts, and he may still delete it.
    await change(bus, bob, room, "remove", bob);
    assertEquals(await bus.store.blobUsageOf(bob.signPubHex), { count: 1, bytes: 100 });
    assertEquals((await as(bus, bob).del(`/v1/blobs/${b1.body.id}`)).status, 204);
    assertEquals(await bus.store.blobUsageOf(bob.signPubHex), { count: 0, bytes: 0 });
    assertEquals(
      (await as(bus, alice).raw(`/v1/blobs/${b1.body.id}`, { method: "GET" })).status,
      404,
    );
    assertEquals((await as(bus, bob).del(`/v1/blobs/${b1.body.id}`)).status, 404);
    const own = (await create(bus, bob, "blobs.bob", false)).body.id;
    assertEquals((await upload(bus, bob, own, 1)).status, 201);

    // An admin removes another member's blob.
    assertEquals((await as(bus, alice).del(`/v1/blobs/${b2.body.id}`)).status, 204);
    assertEquals(await bus.store.blobUsageOf(carol.signPubHex), { count: 0, bytes: 0 });
  } finally {
    await stopBus(bus);
  }
});
