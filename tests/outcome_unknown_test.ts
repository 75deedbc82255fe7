/**
 * Writes whose outcome is unknown, end to end.
 *
 * The store: on a real nats-server stopped with SIGSTOP (it holds the
 * request and answers nothing), a write times out. A single write (`addUser`)
 * is reported as `StoreOutcomeUnknownError`, and indeed lands once the
 * server resumes; a room creation whose first step timed out is plain
 * `StoreUnavailableError` (its commit was never written) and leaves nothing.
 *
 * HTTP and the client library: a real SQLite store, the real routes behind
 * the real request authentication, on loopback, with the store's committing
 * call made to lose its acknowledgement (it commits, then throws
 * `StoreOutcomeUnknownError`, as a KV write that timed out after the leader
 * stored it does). The server answers 503 `outcome_unknown`; the client's
 * retry meets a 409 (or 404) and turns it into success only when what is
 * stored is what it wrote.
 */

import { ControlPlaneClient, type RoomView } from "../lib/client/control_plane.ts";
import { ControlPlaneError } from "../lib/client/errors.ts";
import { generateIdentity, type Identity } from "../lib/identity/identity.ts";
import { createLogger } from "../lib/log.ts";
import { openKvStore } from "../lib/store/kv.ts";
import { openSqliteStore } from "../lib/store/sqlite.ts";
import {
  type Store,
  StoreOutcomeUnknownError,
  StoreUnavailableError,
  UserExistsError,
} from "../lib/store/store.ts";
import { accessLog, createApp } from "../server/http/app.ts";
import { requireSignedRequests } from "../server/http/request_auth.ts";
import { blobRoutes } from "../server/http/routes/blobs.ts";
import { keyRoutes } from "../server/http/routes/keys.ts";
import { roomRoutes } from "../server/http/routes/rooms.ts";
import type { MissingPeers } from "../server/cluster/status.ts";
import { type RoomStreams, StreamPlacementError } from "../server/rooms/streams.ts";
import { stateAfter } from "../server/rooms/state.ts";
import { applyChange, verifyLog } from "../lib/e2e/membership.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { startNatsServer } from "./helpers/nats_server.ts";
import { as, type Bus, genesis, nextChange, randomBase64 } from "./helpers/rooms_api.ts";
import { waitFor } from "./helpers/wait.ts";

const userOf = (id: Identity, role: "admin" | "member" = "member") => ({
  signPub: id.signPubHex,
  kexPub: id.kexPubHex,
  kexSig: id.kexSigHex,
  handle: id.handle!,
  role,
});

Deno.test("kv store: a write the server never acknowledges is an unknown outcome, and it does land", async () => {
  const ns = await startNatsServer();
  let stopped = false;
  const nc = await ns.connect();
  try {
    const store = await openKvStore({ nc, replicas: 1, opTimeoutMs: 500 });
    const ada = generateIdentity("ada");
    const carl = generateIdentity("carl");
    Deno.kill(ns.pid, "SIGSTOP");
    stopped = true;
    // One write, sent and unanswered: it may have happened.
    await assertRejects(() => store.addUser(userOf(ada)), StoreOutcomeUnknownError);
    // A room's first step (its member set) unanswered: the room's commit (its
    // id record) was never sent, so the answer is "unavailable", not unknown.
    const err = await store.createRoom({
      id: "r1",
      subject: "unknown.room",
      policy: { encrypt: true, sign: true, persist: false },
      createdBy: carl.signPubHex,
    }).then(() => null, (e) => e);
    assert(err instanceof StoreUnavailableError, `${err}`);
    assert(!(err instanceof StoreOutcomeUnknownError), "a room never committed reported unknown");
    Deno.kill(ns.pid, "SIGCONT");
    stopped = false;

    // The unknown write was held by the server and stored when it resumed: a
    // retry meets the user it wrote, exactly as asked.
    const stored = await waitFor(() => store.getUser(ada.signPubHex).catch(() => null), {
      what: "the unacknowledged user to be stored",
      timeoutMs: 10_000,
    });
    assertEquals([stored.handle, stored.kexPub, stored.status], ["ada", ada.kexPubHex, "active"]);
    await assertRejects(() => store.addUser(userOf(ada)), UserExistsError);
    // The room that was never committed is not there, and its subject is free.
    assertEquals(await store.getRoom("r1"), null);
    assertEquals(await store.getRoomBySubject("unknown.room"), null);
    await store.createRoom({
      id: "r2",
      subject: "unknown.room",
      policy: { encrypt: true, sign: true, persist: false },
      createdBy: carl.signPubHex,
    });
    await store.close();
  } finally {
    if (stopped) Deno.kill(ns.pid, "SIGCONT");
    await nc.close().catch(() => {});
    await ns.stop({ remove: true });
  }
});

/** Which store calls lose their acknowledgement next, and how. */
type Fault = "commit" | "drop" | { other: () => Promise<void> };

interface Env {
  base: string;
  store: Store;
  /** Arms the next call of `method`: it commits (or not) and then throws "outcome unknown". */
  lose(method: keyof Store, fault?: Fault): void;
  /** Access-log lines: [method, path, status, error code]. */
  answers: Array<[string, string, number, string | undefined]>;
  missing: MissingPeers;
  client(id: Identity): ControlPlaneClient;
}

async function withApp(fn: (env: Env) => Promise<void>, streams?: RoomStreams): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-unknown-" });
  const real = await openSqliteStore(`${dir}/control.db`);
  const armed = new Map<string | symbol, Fault>();
  const store = new Proxy(real, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== "function") return v;
      return async (...args: unknown[]) => {
        const fault = armed.get(prop);
        if (fault === undefined) return await v.apply(target, args);
        armed.delete(prop);
        if (fault === "commit") await v.apply(target, args);
        else if (fault !== "drop") await fault.other();
        throw new StoreOutcomeUnknownError(`${String(prop)}: not acknowledged (test)`);
      };
    },
  }) as Store;
  const answers: Env["answers"] = [];
  const log = createLogger("test", {
    sink: (line) => {
      const l = JSON.parse(line);
      if (l.msg === "http") answers.push([l.method, l.path, l.status, l.error]);
    },
  });
  const missing: MissingPeers = { names: [], unnamed: 0 };
  const app = createApp({
    log,
    routes: [
      ...roomRoutes({
        store,
        streams: streams ?? {
          create: () => Promise.reject(new Error("no streams here")),
          delete: () => Promise.resolve(),
        },
        recheck: () => {},
        log,
        missingNodes: () => Promise.resolve(missing),
      }),
      ...keyRoutes({ store }),
      ...blobRoutes({ store }),
    ],
    middleware: [accessLog, requireSignedRequests({ store: real })],
  });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, app);
  const clients: ControlPlaneClient[] = [];
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    await fn({
      base,
      store: real,
      lose: (method, fault = "commit") => armed.set(method, fault),
      answers,
      missing,
      client: (id) => {
        const c = new ControlPlaneClient({ urls: [base], signer: id.signer, retryBudgetMs: 5000 });
        clients.push(c);
        return c;
      },
    });
  } finally {
    for (const c of clients) c.close();
    await server.shutdown();
    await real.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("an unknown outcome is 503 outcome_unknown, and the client's retry turns the following conflict into success when the stored value is its own", async (t) => {
  await withApp(async (env) => {
    const alice = generateIdentity("alice");
    const bob = generateIdentity("bob");
    const carol = generateIdentity("carol");
    for (const [id, role] of [[alice, "admin"], [bob, "member"], [carol, "member"]] as const) {
      await env.store.addUser(userOf(id, role));
    }
    const cpAlice = env.client(alice);
    const cpBob = env.client(bob);
    const said = (method: string, path: string) =>
      env.answers.filter(([m, p]) => m === method && p === path).map(([, , s, e]) => [s, e]);
    let view: RoomView;

    await t.step("create: committed, unacknowledged, retried: the room, once", async () => {
      env.lose("createRoom");
      const change = genesis(alice, { subject: "unknown.create" });
      view = await cpAlice.createRoom(change);
      assertEquals(view.changes, [change]);
      // The first answer said so; the retry of the same genesis completed it.
      assertEquals(said("POST", "/v1/rooms"), [[503, "outcome_unknown"], [201, undefined]]);
      assertEquals((await env.store.listRoomsForMember(alice.signPubHex)).length, 1);
    });

    await t.step("change: committed, unacknowledged: the retry's 409 is success", async () => {
      env.lose("applyRoomChange");
      const change = nextChange(view, alice, "add", bob);
      view = await cpAlice.postChange(view.id, change);
      assertEquals(view.changes.at(-1), change);
      assertEquals(said("POST", `/v1/rooms/${view.id}/changes`), [
        [503, "outcome_unknown"],
        [409, "conflict"],
      ]);
    });

    await t.step("change: never stored, unacknowledged: the retry stores it", async () => {
      env.lose("applyRoomChange", "drop");
      const change = nextChange(view, alice, "add", carol);
      view = await cpAlice.postChange(view.id, change);
      assertEquals(view.changes.at(-1), change);
      assertEquals(view.members.length, 3);
    });

    await t.step(
      "change: another change took the seq meanwhile: the 409 stays a refusal",
      async () => {
        const theirs = nextChange(view, alice, "remove", carol);
        const mine = nextChange(view, alice, "remove", bob);
        // Another writer (another node) stores its change at the seq first.
        const before = view;
        env.lose("applyRoomChange", {
          other: () => {
            const next = applyChange(verifyLog(before.id, before.changes), theirs);
            return env.store.applyRoomChange(
              before.id,
              next.seq,
              theirs,
              stateAfter(next, [...before.changes, theirs]),
            );
          },
        });
        const err = await cpAlice.postChange(view.id, mine).then(() => null, (e) => e);
        assert(err instanceof ControlPlaneError && err.status === 409, `${err}`);
        view = await cpAlice.getRoom(view.id);
        assertEquals(view.changes.at(-1), theirs);
      },
    );

    await t.step("keys: half stored, unacknowledged: the retry completes the set", async () => {
      const keys = view.members.map((m) => ({ recipient: m.signPub, sealed: randomBase64(80) }));
      // The first try stored one key of the two, then lost its answer.
      env.lose("putSealedKeys", {
        other: () =>
          env.store.putSealedKeys(view.id, view.epoch, [{ ...keys[0], sealedBy: alice.signPubHex }])
            .then(() => {}),
      });
      assertEquals(await cpAlice.putKeys(view.id, view.epoch, keys), { stored: keys.length });
      const bobs = await cpBob.getKeys(view.id);
      assertEquals(bobs.map((k) => k.epoch), [view.epoch]);
    });

    await t.step(
      "blob: committed, unacknowledged: found under the id the server named, stored once",
      async () => {
        env.lose("putBlob");
        const bytes = crypto.getRandomValues(new Uint8Array(3000));
        const up = await cpAlice.putBlob(view.id, bytes);
        assertEquals(await cpBob.getBlob(up.id), bytes);
        assertEquals(await env.store.blobUsageOf(alice.signPubHex), { count: 1, bytes: 3000 });
      },
    );

    await t.step(
      "leave: committed, unacknowledged: the retry's 404 is the leave done",
      async () => {
        env.lose("applyRoomChange");
        const change = nextChange(view, bob, "remove", bob);
        await cpBob.postLeave(view.id, change);
        assertEquals(said("POST", `/v1/rooms/${view.id}/changes`).slice(-2), [
          [503, "outcome_unknown"],
          [404, "not_found"],
        ]);
        assertEquals(await env.store.getMember(view.id, bob.signPubHex), null);
      },
    );

    await t.step(
      "delete: committed, unacknowledged: the retry's 404 is the deletion done",
      async () => {
        env.lose("deleteRoom");
        await cpAlice.deleteRoom(view.id);
        assertEquals(said("DELETE", `/v1/rooms/${view.id}`), [[503, "outcome_unknown"], [
          404,
          "not_found",
        ]]);
        assertEquals(await env.store.getRoom(view.id), null);
      },
    );

    await t.step("without a retry budget the client reports the unknown outcome", async () => {
      const once = new ControlPlaneClient({
        urls: [env.base],
        signer: alice.signer,
        retryBudgetMs: 0,
      });
      try {
        env.lose("createRoom");
        const err = await once.createRoom(genesis(alice, { subject: "unknown.once" }))
          .then(() => null, (e) => e);
        assert(err instanceof ControlPlaneError, `${err}`);
        assertEquals([err.status, err.code, err.retryAfterS], [503, "outcome_unknown", 1]);
      } finally {
        once.close();
      }
    });
  });
});

Deno.test("a persisted room while a node is down: 503 cluster_degraded with Retry-After and the node named, nothing kept", async () => {
  let placeable = false;
  const created: string[] = [];
  const deleted: string[] = [];
  const streams: RoomStreams = {
    create: (room) => {
      created.push(room.id);
      return placeable
        ? Promise.resolve(`ROOM_${room.id}`)
        : Promise.reject(new StreamPlacementError("no suitable peers for placement"));
    },
    delete: (id) => {
      deleted.push(id);
      return Promise.resolve();
    },
  };
  await withApp(async (env) => {
    const alice = generateIdentity("alice");
    await env.store.addUser(userOf(alice, "admin"));
    const api = as({ s: { httpUrl: env.base } } as unknown as Bus, alice);
    const post = (subject: string, room?: string) =>
      api.raw("/v1/rooms", {
        method: "POST",
        body: JSON.stringify({ change: genesis(alice, { subject, room, persist: true }) }),
        headers: { "content-type": "application/json" },
      });

    // The monitor knows a node is down: refused before anything is written.
    env.missing.names = ["n3"];
    const res = await post("degraded.one");
    const body = await res.json();
    assertEquals([res.status, body.error, body.missing], [503, "cluster_degraded", ["n3"]]);
    assertEquals(res.headers.get("retry-after"), "30");
    assert(body.message.includes("node n3 is down"), body.message);
    assertEquals(created, [], "a stream was asked for");
    assertEquals(await env.store.listRoomsForMember(alice.signPubHex), []);

    // The monitor saw nothing yet, but JetStream cannot place the stream: the
    // same answer, and the room written meanwhile is taken back.
    env.missing.names = [];
    const raced = await post("degraded.two");
    assertEquals([raced.status, (await raced.json()).error], [503, "cluster_degraded"]);
    assertEquals(created.length, 1);
    assertEquals(deleted, created);
    assertEquals(await env.store.listRoomsForMember(alice.signPubHex), []);
    assertEquals(await env.store.countRoomsCreatedBy(alice.signPubHex), { rooms: 0, persisted: 0 });

    // A plain room is not affected; a persisted one is made once placement works.
    env.missing.names = ["n3"];
    const plain = await api.post("/v1/rooms", {
      change: genesis(alice, { subject: "degraded.plain" }),
    });
    assertEquals(plain.status, 201, JSON.stringify(plain.body));
    env.missing.names = [];
    placeable = true;
    assertEquals((await post("degraded.two")).status, 201);
  }, streams);
});
