/**
 * Users, sealed room keys and blobs over the real control plane of a
 * `serve --bus-auth enforce`.
 */

import { fromBase64, toBase64, toHex } from "../lib/e2e/bytes.ts";
import { generateRoomKey, openRoomKey, sealRoomKey } from "../lib/e2e/room_key.ts";
import { generateIdentity, Identity } from "../lib/identity/identity.ts";
import type { RoomView } from "../server/rooms/state.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { addBusUser } from "./helpers/bus.ts";
import {
  as,
  type Bus,
  genesis,
  nextChange,
  randomBase64,
  startBus,
  stopBus,
} from "./helpers/rooms_api.ts";

async function roomWith(bus: Bus, admin: Identity, subject: string, members: Identity[]) {
  let view = (await as(bus, admin).post<RoomView>("/v1/rooms", {
    change: genesis(admin, { subject }),
  })).body;
  for (const m of members) {
    const res = await as(bus, admin).post<RoomView>(`/v1/rooms/${view.id}/changes`, {
      change: nextChange(view, admin, "add", m),
    });
    assertEquals(res.status, 200, JSON.stringify(res.body));
    view = res.body;
  }
  return view;
}

Deno.test("users: any active user looks up keys, and registers its own kex once", async (t) => {
  const bus = await startBus();
  try {
    const alice = (await addBusUser(bus.store, "alice")).identity;
    const bob = generateIdentity("bob");
    await bus.store.addUser({
      signPub: bob.signPubHex,
      kexPub: null,
      kexSig: null,
      handle: "bob",
      role: "member",
    });

    await t.step("GET /v1/users/:signPub returns the public record", async () => {
      const res = await as(bus, bob).get(`/v1/users/${alice.signPubHex}`);
      assertEquals(res.status, 200);
      assertEquals(res.body, {
        signPub: alice.signPubHex,
        handle: "alice",
        role: "member",
        status: "active",
        kexPub: alice.kexPubHex,
        kexSig: alice.kexSigHex,
      });
      const bobView = await as(bus, alice).get(`/v1/users/${bob.signPubHex}`);
      assertEquals([bobView.body.kexPub, bobView.body.kexSig], [null, null]);
    });

    await t.step("an unknown key is 404 and a malformed one 400", async () => {
      const unknown = await as(bus, alice).get(`/v1/users/${generateIdentity().signPubHex}`);
      assertEquals([unknown.status, unknown.body.error], [404, "not_found"]);
      const bad = await as(bus, alice).get(`/v1/users/${"AB".repeat(32)}`);
      assertEquals([bad.status, bad.body.error], [400, "invalid_key"]);
    });

    await t.step("PUT /v1/me/kex sets a missing key, then is idempotent", async () => {
      const body = { kexPub: bob.kexPubHex, kexSig: bob.kexSigHex };
      assertEquals((await as(bus, bob).put("/v1/me/kex", body)).body, { changed: true });
      assertEquals((await as(bus, bob).put("/v1/me/kex", body)).body, { changed: false });
      assertEquals((await bus.store.getUser(bob.signPubHex))?.kexPub, bob.kexPubHex);
    });

    await t.step("a different key later is 409 kex_conflict and changes nothing", async () => {
      const twin = new Identity(bob.signSeed, crypto.getRandomValues(new Uint8Array(32)));
      const res = await as(bus, bob).put("/v1/me/kex", {
        kexPub: twin.kexPubHex,
        kexSig: twin.kexSigHex,
      });
      assertEquals([res.status, res.body.error], [409, "kex_conflict"]);
      assertEquals((await bus.store.getUser(bob.signPubHex))?.kexPub, bob.kexPubHex);
    });

    await t.step("a binding not signed by the caller, or malformed input, is 400", async () => {
      const cases: unknown[] = [
        // Bob's binding is valid, but not Alice's: it binds Bob's signing key.
        { kexPub: bob.kexPubHex, kexSig: bob.kexSigHex },
        { kexPub: alice.kexPubHex, kexSig: "00".repeat(64) },
        { kexPub: "0".repeat(64), kexSig: bob.kexSigHex },
        { kexPub: bob.kexPubHex },
        { kexPub: 1, kexSig: bob.kexSigHex },
        {},
        [],
        "{",
      ];
      for (const body of cases) {
        const res = await as(bus, alice).put("/v1/me/kex", body);
        assertEquals(res.status, 400, JSON.stringify(body));
      }
      assertEquals((await bus.store.getUser(alice.signPubHex))?.kexPub, alice.kexPubHex);
    });
  } finally {
    await stopBus(bus);
  }
});

Deno.test("sealed room keys: admins hand them to members of the epoch, members fetch their own", async (t) => {
  const bus = await startBus();
  try {
    const alice = (await addBusUser(bus.store, "alice")).identity;
    const bob = (await addBusUser(bus.store, "bob")).identity;
    const carol = (await addBusUser(bus.store, "carol")).identity;
    let view = await roomWith(bus, alice, "keys.room", [bob]); // epoch 1: alice, bob
    const id = view.id;
    const key1 = generateRoomKey();
    const sealFor = (who: Identity, epoch: number, key: Uint8Array) =>
      toBase64(sealRoomKey({
        roomId: id,
        epoch,
        roomKey: key,
        memberSignPub: who.signPub,
        memberKexPub: who.kexPub,
        admin: alice.signer,
      }));

    await t.step("an admin stores one epoch's keys for its members: 201 {stored}", async () => {
      const res = await as(bus, alice).put(`/v1/rooms/${id}/keys/1`, {
        keys: [
          { recipient: alice.signPubHex, sealed: sealFor(alice, 1, key1) },
          { recipient: bob.signPubHex, sealed: sealFor(bob, 1, key1) },
        ],
      });
      assertEquals([res.status, res.body], [201, { stored: 2 }]);
    });

    await t.step("the member fetches its key and opens it", async () => {
      const res = await as(bus, bob).get<
        { keys: { epoch: number; sealed: string; sealedBy: string }[] }
      >(
        `/v1/rooms/${id}/keys`,
      );
      assertEquals(res.status, 200);
      assertEquals(res.body.keys.map((k) => [k.epoch, k.sealedBy]), [[1, alice.signPubHex]]);
      const opened = openRoomKey({
        envelope: fromBase64(res.body.keys[0].sealed),
        roomId: id,
        epoch: 1,
        adminSignPub: alice.signPub,
        me: bob,
      });
      assertEquals(toHex(opened), toHex(key1));
    });

    await t.step("a second key for the same epoch and recipient is 409 key_exists", async () => {
      const res = await as(bus, alice).put(`/v1/rooms/${id}/keys/1`, {
        keys: [{ recipient: bob.signPubHex, sealed: randomBase64(120) }],
      });
      assertEquals([res.status, res.body.error], [409, "key_exists"]);
    });

    await t.step(
      "a recipient who is not a member is 400 not_a_member, and nothing is stored",
      async () => {
        const res = await as(bus, alice).put(`/v1/rooms/${id}/keys/0`, {
          keys: [
            { recipient: alice.signPubHex, sealed: randomBase64(120) },
            { recipient: carol.signPubHex, sealed: randomBase64(120) },
          ],
        });
        assertEquals([res.status, res.body.error], [400, "not_a_member"]);
        assertEquals(await bus.store.getSealedKey(id, 0, alice.signPubHex), null);
      },
    );

    await t.step("an admin shares an older epoch with a newer member", async () => {
      const res = await as(bus, alice).put(`/v1/rooms/${id}/keys/0`, {
        keys: [{ recipient: bob.signPubHex, sealed: randomBase64(120) }],
      });
      assertEquals([res.status, res.body], [201, { stored: 1 }]);
      const mine = await as(bus, bob).get<{ keys: { epoch: number }[] }>(`/v1/rooms/${id}/keys`);
      assertEquals(mine.body.keys.map((k) => k.epoch), [0, 1]);
    });

    await t.step("a member who is not an admin is 403 not_admin", async () => {
      const res = await as(bus, bob).put(`/v1/rooms/${id}/keys/1`, {
        keys: [{ recipient: alice.signPubHex, sealed: randomBase64(120) }],
      });
      assertEquals([res.status, res.body.error], [403, "not_admin"]);
    });

    await t.step("a future epoch, a bad epoch or a malformed body is 400", async () => {
      const a = as(bus, alice);
      const one = [{ recipient: alice.signPubHex, sealed: randomBase64(120) }];
      const cases: Array<[string, unknown]> = [
        [`/v1/rooms/${id}/keys/2`, { keys: one }],
        [`/v1/rooms/${id}/keys/x`, { keys: one }],
        [`/v1/rooms/${id}/keys/-1`, { keys: one }],
        [`/v1/rooms/${id}/keys/01`, { keys: one }],
        [`/v1/rooms/${id}/keys/1`, { keys: [] }],
        [`/v1/rooms/${id}/keys/1`, { keys: "no" }],
        [`/v1/rooms/${id}/keys/1`, {}],
        [`/v1/rooms/${id}/keys/1`, { keys: [{ recipient: "me", sealed: "AAAA" }] }],
        [`/v1/rooms/${id}/keys/1`, { keys: [{ recipient: carol.signPubHex }] }],
        [`/v1/rooms/${id}/keys/1`, { keys: [{ recipient: alice.signPubHex, sealed: "not b64!" }] }],
        [`/v1/rooms/${id}/keys/1`, "{"],
      ];
      for (const [path, body] of cases) {
        const res = await a.put(path, body);
        assertEquals(
          res.status,
          400,
          `${path} ${JSON.stringify(body)}: ${JSON.stringify(res.body)}`,
        );
      }
    });

    await t.step("someone who never was a member gets 404 for keys", async () => {
      assertEquals((await as(bus, carol).get(`/v1/rooms/${id}/keys`)).status, 404);
      const put = await as(bus, carol).put(`/v1/rooms/${id}/keys/1`, {
        keys: [{ recipient: carol.signPubHex, sealed: randomBase64(120) }],
      });
      assertEquals(put.status, 404);
    });

    await t.step("a removed member still fetches the keys of epochs it belonged to", async () => {
      const res = await as(bus, alice).post<RoomView>(`/v1/rooms/${id}/changes`, {
        change: nextChange(view, alice, "remove", bob),
      });
      assertEquals(res.status, 200);
      view = res.body;
      const mine = await as(bus, bob).get<{ keys: { epoch: number }[] }>(`/v1/rooms/${id}/keys`);
      assertEquals([mine.status, mine.body.keys.map((k) => k.epoch)], [200, [0, 1]]);
      // But nobody may seal a key of the new epoch to him.
      const put = await as(bus, alice).put(`/v1/rooms/${id}/keys/2`, {
        keys: [{ recipient: bob.signPubHex, sealed: randomBase64(120) }],
      });
      assertEquals([put.status, put.body.error], [400, "not_a_member"]);
    });
  } finally {
    await stopBus(bus);
  }
});

Deno.test("blobs: members upload and download bytes, everyone else sees 404", async (t) => {
  const bus = await startBus();
  try {
    const alice = (await addBusUser(bus.store, "alice")).identity;
    const bob = (await addBusUser(bus.store, "bob")).identity;
    const carol = (await addBusUser(bus.store, "carol")).identity;
    const view = await roomWith(bus, alice, "blob.room", [bob]);
    const bytes = crypto.getRandomValues(new Uint8Array(60_000));
    let blobId = "";
    const upload = (who: Identity, body: Uint8Array, type = "application/octet-stream") =>
      as(bus, who).raw(`/v1/rooms/${view.id}/blobs`, {
        method: "POST",
        body,
        headers: { "content-type": type },
      });

    await t.step("a member uploads: 201 {id, size}", async () => {
      const res = await upload(bob, bytes);
      assertEquals(res.status, 201);
      const body = await res.json();
      assertEquals(body.size, bytes.byteLength);
      assert(/^[0-9a-f]{32}$/.test(body.id), body.id);
      blobId = body.id;
    });

    await t.step("another member downloads the same bytes", async () => {
      const res = await as(bus, alice).raw(`/v1/blobs/${blobId}`, { method: "GET" });
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "application/octet-stream");
      assertEquals(toHex(new Uint8Array(await res.arrayBuffer())), toHex(bytes));
    });

    await t.step(
      "a non-member gets 404 for download and upload, as for a missing blob",
      async () => {
        for (
          const path of [`/v1/blobs/${blobId}`, `/v1/blobs/${"0".repeat(32)}`, "/v1/blobs/nope"]
        ) {
          const res = await as(bus, carol).raw(path, { method: "GET" });
          assertEquals(res.status, 404, path);
          assertEquals((await res.json()).error, "not_found");
        }
        const res = await upload(carol, bytes);
        assertEquals(res.status, 404);
        await res.body?.cancel();
      },
    );

    await t.step(
      "more than 8 MiB is 413, an empty or non-octet-stream body is refused",
      async () => {
        const big = await upload(alice, new Uint8Array(8 * 1024 * 1024 + 1));
        assertEquals(big.status, 413);
        assertEquals((await big.json()).error, "too_large");
        const exact = await upload(alice, new Uint8Array(8 * 1024 * 1024));
        assertEquals(exact.status, 201);
        await exact.body?.cancel();
        const empty = await upload(alice, new Uint8Array(0));
        assertEquals([empty.status, (await empty.json()).error], [400, "empty_blob"]);
        const json = await upload(alice, new TextEncoder().encode("{}"), "application/json");
        assertEquals([json.status, (await json.json()).error], [415, "unsupported_media_type"]);
      },
    );

    await t.step("deleting the room deletes its blobs", async () => {
      assertEquals((await as(bus, alice).del(`/v1/rooms/${view.id}`)).status, 204);
      const res = await as(bus, alice).raw(`/v1/blobs/${blobId}`, { method: "GET" });
      assertEquals(res.status, 404);
      await res.body?.cancel();
      assertEquals(await bus.store.getBlobMeta(blobId), null);
    });
  } finally {
    await stopBus(bus);
  }
});
