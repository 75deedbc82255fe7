import { connect, nkeyAuthenticator } from "@nats-io/transport-node";
import { Codec } from "@nats-io/nkeys/lib/codec.js";
import { inboxPrefixFor } from "../lib/auth/acl.ts";
import { busUserAuthenticator, natsAuthMessage, Prefix } from "../lib/auth/nkey.ts";
import type { Store } from "../lib/store/store.ts";
import { REFRESH_NOTICE_SUFFIX } from "../server/auth/enforcer.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "./helpers/assert.ts";
import {
  addBusUser,
  addRoom,
  type BusUser,
  connectAs,
  publishDenied,
  strangerUser,
  subscribeDenied,
} from "./helpers/bus.ts";
import { type ServeUnderTest, spawnUnibus, startServe } from "./helpers/serve_process.ts";
import { openServeStore, storeArgs, type StoreKind } from "./helpers/serve_store.ts";

async function enforceBus(
  extraArgs: string[] = [],
  kind: StoreKind = "sqlite",
): Promise<{ s: ServeUnderTest; store: Store; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-enforce-" });
  const s = await startServe({
    extraArgs: ["--bus-auth", "enforce", ...storeArgs(kind, `${dir}/internal.id`), ...extraArgs],
  });
  // The test writes the allowlist behind serve's back, as another process
  // does: the SQLite file (offline `unibus user`), or the KV buckets with the
  // internal identity (`unibus user --store kv`, another node).
  const store = await openServeStore(s, kind, `${dir}/internal.id`).catch(async (err) => {
    await s.stop();
    throw err;
  });
  return { s, store, dir };
}

async function stopBus(bus: { s: ServeUnderTest; store: Store; dir: string }): Promise<void> {
  await bus.store.close();
  assertEquals((await bus.s.stop()).code, 0);
  await Deno.remove(bus.dir, { recursive: true });
}

/** Registers `fn` once per store backend, named after it. */
function eachStore(name: string, fn: (kind: StoreKind, t: Deno.TestContext) => Promise<void>) {
  for (const kind of ["sqlite", "kv"] as const) {
    Deno.test(`${name} (${kind})`, (t) => fn(kind, t));
  }
}

/** `p`'s value if it settles within `ms`, else null; never leaves a timer behind. */
async function within<T>(ms: number, p: Promise<T>): Promise<T | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([p, new Promise<null>((r) => timer = setTimeout(() => r(null), ms))]);
  } finally {
    clearTimeout(timer);
  }
}

function refusedLine(s: ServeUnderTest, reason: string) {
  return s.waitFor((l) => l.msg === "connection refused" && l.reason === reason, 5000);
}

eachStore("enforce mode reports its posture on /healthz", async (kind) => {
  const bus = await enforceBus([], kind);
  try {
    const body = await (await fetch(`${bus.s.httpUrl}/healthz`)).json();
    assertEquals(body.posture, {
      auth: "enforce",
      acl: true,
      tls: false,
      store: kind,
      replicas: 1,
    });
    if (kind === "kv") {
      // R1 is a single copy: said at start-up, never advertised as HA.
      await bus.s.waitFor((l) => /not HA/.test(String(l.msg)), 1000);
    }
  } finally {
    await stopBus(bus);
  }
});

Deno.test("clients that cannot prove an allowlisted, active key are refused, with the reason logged", async () => {
  const bus = await enforceBus();
  try {
    const port = bus.s.natsPort;
    const alice = await addBusUser(bus.store, "alice");
    const mallory = await addBusUser(bus.store, "mallory");
    await bus.store.revokeUser(mallory.hex);

    // No credentials at all.
    await assertRejects(() => connectAs(port, null), Error, "Authorization Violation");
    await refusedLine(bus.s, "no nkey presented");

    // A well-formed key that is not on the allowlist.
    await assertRejects(() => connectAs(port, strangerUser()), Error, "Authorization Violation");
    await refusedLine(bus.s, "key is not on the allowlist");

    // Alice's public key, but the nonce signed by someone else's key.
    const forger = strangerUser();
    await assertRejects(
      () =>
        connectAs(port, alice, {
          authenticator: (nonce?: string) => ({
            nkey: alice.kp.getPublicKey(),
            sig: forger.kp.sign(natsAuthMessage(nonce ?? "")).toBase64(),
          }),
        }),
      Error,
      "Authorization Violation",
    );
    await refusedLine(bus.s, "nonce signature does not verify");

    // A revoked user with a perfectly good signature.
    await assertRejects(() => connectAs(port, mallory), Error, "Authorization Violation");
    await refusedLine(bus.s, "user is revoked");

    // And serve survived all of it.
    assertEquals((await fetch(`${bus.s.httpUrl}/healthz`)).status, 200);
  } finally {
    await stopBus(bus);
  }
});

Deno.test("a signature in padded standard base64 (as nats.js encodes) is accepted as well as url-safe", async () => {
  const bus = await enforceBus();
  try {
    const alice = await addBusUser(bus.store, "alice");
    const nc = await connect({
      servers: `127.0.0.1:${bus.s.natsPort}`,
      authenticator: (nonce?: string) => ({
        nkey: alice.kp.getPublicKey(),
        sig: alice.kp.sign(natsAuthMessage(nonce ?? "")).toBase64(),
      }),
      inboxPrefix: inboxPrefixFor(alice.hex),
      maxReconnectAttempts: 0,
    });
    await nc.close();
  } finally {
    await stopBus(bus);
  }
});

Deno.test("a signature over the bare nonce (stock nkey authenticator) is refused", async () => {
  // The identity key also signs membership changes and HTTP requests, so a
  // login signature is only valid over "unibus/nats-auth/v1\n" + nonce: a
  // server that sent other text as its nonce gets nothing reusable.
  const bus = await enforceBus();
  try {
    const alice = await addBusUser(bus.store, "alice");
    const seed = Codec.encodeSeed(Prefix.User, alice.identity.signSeed);
    await assertRejects(
      () =>
        connect({
          servers: `127.0.0.1:${bus.s.natsPort}`,
          authenticator: nkeyAuthenticator(seed),
          maxReconnectAttempts: 0,
        }),
      Error,
      "Authorization Violation",
    );
    await refusedLine(bus.s, "nonce signature does not verify");
  } finally {
    await stopBus(bus);
  }
});

Deno.test("the bus-user authenticator will not sign a 'nonce' that is not one", () => {
  const kp = strangerUser().kp;
  const auth = busUserAuthenticator(kp);
  assertEquals(auth("unibus/membership/v1\nroom: x\n").sig, "");
  assertEquals(auth("").sig, "");
  assert(auth("6d9cL3Q2vE4ZRtA").sig.length > 80, "a real nonce is signed");
});

Deno.test("a member publishes, subscribes and answers requests on its room's subject", async () => {
  const bus = await enforceBus();
  try {
    const alice = await addBusUser(bus.store, "alice");
    const bob = await addBusUser(bus.store, "bob");
    await addRoom(bus.store, "scout-in", "agent.scout.in", [alice, bob]);
    const na = await connectAs(bus.s.natsPort, alice);
    const nb = await connectAs(bus.s.natsPort, bob);
    try {
      const sub = nb.subscribe("agent.scout.in", {
        callback: (_err, msg) => {
          if (msg.reply) msg.respond(`pong:${msg.string()}`);
        },
      });
      await nb.flush();
      // The reply travels to Alice's private inbox; Bob may publish there only
      // because he received a request naming it (allow_responses).
      const reply = await na.request("agent.scout.in", "ping", { timeout: 2000 });
      assertEquals(reply.string(), "pong:ping");
      sub.unsubscribe();
    } finally {
      await na.close();
      await nb.close();
    }
  } finally {
    await stopBus(bus);
  }
});

eachStore("a member is denied every subject that is not its own", async (kind, t) => {
  const bus = await enforceBus([], kind);
  try {
    const alice = await addBusUser(bus.store, "alice");
    const bob = await addBusUser(bus.store, "bob");
    await addRoom(bus.store, "a-room", "agent.alice.in", [alice]);
    await addRoom(bus.store, "b-room", "agent.bob.in", [bob]);
    const nc = await connectAs(bus.s.natsPort, alice);
    try {
      await t.step("another room's subject", async () => {
        await publishDenied(nc, "agent.bob.in");
        await subscribeDenied(nc, "agent.bob.in");
      });
      await t.step("the full wildcard", async () => {
        await subscribeDenied(nc, ">");
        await publishDenied(nc, "agent.anything");
      });
      await t.step("the control plane's KV buckets", async () => {
        await subscribeDenied(nc, "$KV.UNIBUS_users.>");
        await subscribeDenied(nc, "$KV.>");
        await publishDenied(nc, `$KV.UNIBUS_users.${alice.hex}`);
        for (
          const b of [
            "UNIBUS_users",
            "UNIBUS_rooms",
            "UNIBUS_members",
            "UNIBUS_room_keys",
            "UNIBUS_rooms_by_member",
            "UNIBUS_nonces",
            "UNIBUS_room_changes",
            "UNIBUS_blob_meta",
          ]
        ) {
          await publishDenied(nc, `$KV.${b}.x`);
          await publishDenied(nc, `$JS.API.DIRECT.GET.KV_${b}`);
          await publishDenied(nc, `$JS.API.STREAM.MSG.GET.KV_${b}`);
          await publishDenied(nc, `$JS.API.STREAM.INFO.KV_${b}`);
          await publishDenied(nc, `$JS.API.STREAM.PURGE.KV_${b}`);
        }
      });
      await t.step("the blob object store", async () => {
        await subscribeDenied(nc, "$O.>");
        await publishDenied(nc, "$O.UNIBUS_blobs.C.x");
        await publishDenied(nc, "$JS.API.STREAM.INFO.OBJ_UNIBUS_blobs");
        await publishDenied(nc, "$JS.API.DIRECT.GET.OBJ_UNIBUS_blobs");
        await publishDenied(nc, "$JS.API.CONSUMER.CREATE.OBJ_UNIBUS_blobs");
      });
      await t.step("the JetStream API beyond its rooms", async () => {
        await publishDenied(nc, "$JS.API.STREAM.LIST");
        await publishDenied(nc, "$JS.API.STREAM.NAMES");
        await publishDenied(nc, "$JS.API.STREAM.CREATE.EVIL");
        await publishDenied(nc, "$JS.API.STREAM.INFO.KV_UNIBUS_users");
        await publishDenied(nc, "$JS.API.STREAM.UPDATE.KV_UNIBUS_users");
        await publishDenied(nc, "$JS.API.STREAM.DELETE.KV_UNIBUS_users");
      });
      await t.step("the system account", async () => {
        await subscribeDenied(nc, "$SYS.>");
        await publishDenied(nc, "$SYS.REQ.SERVER.PING");
      });
      await t.step("another user's inbox and the shared inbox", async () => {
        await subscribeDenied(nc, `${inboxPrefixFor(bob.hex)}.>`);
        await subscribeDenied(nc, "_INBOX.>");
      });
      await t.step("the server's notices on another user's inbox", async () => {
        await publishDenied(nc, `${inboxPrefixFor(bob.hex)}.unibus.refresh`);
        await publishDenied(nc, `${inboxPrefixFor(bob.hex)}.unibus.room`);
      });
      await t.step("a reply to a reply subject it chose itself (no allow_responses)", async () => {
        // Publish into its own room naming a JetStream API subject as the
        // reply, receive it, answer it: with allow_responses NATS would let
        // that answer through the deny list.
        nc.subscribe("agent.alice.in", {
          max: 1,
          callback: (_e, m) => {
            m.respond("{}");
          },
        });
        await nc.flush();
        const denied = publishDenied(nc, "$JS.API.STREAM.LIST", { send: false });
        nc.publish("agent.alice.in", "x", { reply: "$JS.API.STREAM.LIST" });
        await denied;
      });
      await t.step("consumers on any stream", async () => {
        await publishDenied(nc, "$JS.API.CONSUMER.CREATE.ROOM_a-room");
      });
      assert(!nc.isClosed(), "violations are reported, the connection stays");
    } finally {
      await nc.close();
    }
  } finally {
    await stopBus(bus);
  }
});

eachStore(
  "revoking a connected user cuts it within a second and refuses its reconnect",
  async (kind) => {
    const bus = await enforceBus([], kind);
    try {
      const alice = await addBusUser(bus.store, "alice");
      const nc = await connectAs(bus.s.natsPort, alice);
      const closed = nc.closed();
      const revokedAt = performance.now();
      await bus.store.revokeUser(alice.hex);
      const cut = await within(1000, closed.then(() => performance.now() - revokedAt));
      assert(cut !== null, "the connection was not cut within a second");
      await bus.s.waitFor((l) => l.msg === "connection cut" && l.signPub === alice.hex);
      await assertRejects(() => connectAs(bus.s.natsPort, alice), Error, "Authorization Violation");
    } finally {
      await stopBus(bus);
    }
  },
);

/** Alice and Bob, allowlisted and both members of room "shared" (team.shared). */
async function sharedRoom(store: Store) {
  const alice = await addBusUser(store, "alice");
  const bob = await addBusUser(store, "bob");
  await addRoom(store, "shared", "team.shared", [alice, bob]);
  return { alice, bob };
}

/** A new connection of `user` is not granted team.shared. */
async function assertSharedRoomGone(port: number, user: BusUser): Promise<void> {
  const again = await connectAs(port, user);
  try {
    await subscribeDenied(again, "team.shared");
  } finally {
    await again.close();
  }
}

eachStore(
  "removing a member cuts its connection and the reconnect no longer has the room",
  async (kind) => {
    const bus = await enforceBus([], kind);
    try {
      const { bob } = await sharedRoom(bus.store);
      const nb = await connectAs(bus.s.natsPort, bob);
      const closed = nb.closed();
      await bus.store.removeMember("shared", bob.hex);
      assert(await within(1500, closed.then(() => true)), "bob was not cut");
      await assertSharedRoomGone(bus.s.natsPort, bob);
    } finally {
      await stopBus(bus);
    }
  },
);

eachStore(
  "adding a member to a room tells its live connection to refresh its session",
  async (kind) => {
    const bus = await enforceBus([], kind);
    try {
      const alice = await addBusUser(bus.store, "alice");
      const bob = await addBusUser(bus.store, "bob");
      const nb = await connectAs(bus.s.natsPort, bob);
      try {
        const notice = nb.subscribe(`${inboxPrefixFor(bob.hex)}.${REFRESH_NOTICE_SUFFIX}`, {
          max: 1,
        });
        await nb.flush();
        await addRoom(bus.store, "new-room", "team.new", [alice, bob]);
        const got = await within(
          2000,
          (async () => {
            for await (const m of notice) return m.string();
          })(),
        );
        assertEquals(got, "refresh");
        // Nothing Bob holds is wrong, so he is not cut; after refreshing he has the room.
        assert(!nb.isClosed());
        const fresh = await connectAs(bus.s.natsPort, bob);
        const sub = fresh.subscribe("team.new", { max: 1 });
        await fresh.flush();
        const na = await connectAs(bus.s.natsPort, alice);
        na.publish("team.new", "welcome");
        await na.flush();
        for await (const m of sub) assertEquals(m.string(), "welcome");
        await na.close();
        await fresh.close();
      } finally {
        await nb.close();
      }
    } finally {
      await stopBus(bus);
    }
  },
);

Deno.test("--internal-id-file is created 0600 and the same identity is used after a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-internal-" });
  const idFile = `${dir}/internal.id`;
  try {
    const nkeys: string[] = [];
    for (let i = 0; i < 2; i++) {
      const s = await startServe({
        extraArgs: ["--bus-auth", "enforce", "--internal-id-file", idFile],
      });
      try {
        const line = s.lines.find((l) => l.msg === "internal service identity")!;
        nkeys.push(String(line.nkey));
        assertEquals(line.persisted, idFile);
        assertEquals((await Deno.stat(idFile)).mode! & 0o777, 0o600);
      } finally {
        await s.stop();
      }
    }
    assertMatch(nkeys[0], /^U[A-Z2-7]{55}$/);
    assertEquals(nkeys[0], nkeys[1]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// The callout may answer from what it read at the last login (SQLite:
// lib/store/sqlite.ts getUserAccess). A login right after a write by another
// process, before serve's change feed can have seen it (the SQLite poll is
// 250 ms), must still be decided on the new state.
eachStore(
  "a login right after a removal or a revocation elsewhere is decided on the new state",
  async (kind) => {
    const bus = await enforceBus([], kind);
    try {
      const { alice, bob } = await sharedRoom(bus.store);
      for (let i = 0; i < 3; i++) await (await connectAs(bus.s.natsPort, bob)).close();
      await bus.store.removeMember("shared", bob.hex);
      await assertSharedRoomGone(bus.s.natsPort, bob);
      for (let i = 0; i < 3; i++) await (await connectAs(bus.s.natsPort, alice)).close();
      await bus.store.revokeUser(alice.hex);
      await assertRejects(() => connectAs(bus.s.natsPort, alice), Error, "Authorization Violation");
    } finally {
      await stopBus(bus);
    }
  },
);

Deno.test("`unibus user revoke` on the node's database cuts the user's live connection", async () => {
  const bus = await enforceBus();
  try {
    const alice = await addBusUser(bus.store, "alice");
    const nc = await connectAs(bus.s.natsPort, alice);
    const closed = nc.closed();
    const cli = spawnUnibus(["user", "revoke", alice.hex, "--db", `${bus.s.dataDir}/unibus.db`]);
    assertEquals((await cli.finished).code, 0, cli.stderr());
    assert(await within(1500, closed.then(() => true)), "the connection was not cut");
    await assertRejects(() => connectAs(bus.s.natsPort, alice), Error, "Authorization Violation");
  } finally {
    await stopBus(bus);
  }
});
