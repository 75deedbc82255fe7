import { Buffer } from "node:buffer";
import { AUTH_HEADERS, signedFetch, signRequest } from "../lib/auth/request_signing.ts";
import { type Ed25519KeyPair, generateSeed, keyPairFromSeed } from "../lib/crypto/ed25519.ts";
import { createLogger } from "../lib/log.ts";
import { openSqliteStore } from "../lib/store/sqlite.ts";
import type { Store } from "../lib/store/store.ts";
import { createApp, json, readBody, readJson, type Route } from "../server/http/app.ts";
import { requireSignedRequests, startNoncePruner } from "../server/http/request_auth.ts";
import { UploadGate } from "../server/http/upload_gate.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { rawPost } from "./helpers/raw_http.ts";
import { waitFor } from "./helpers/wait.ts";

const SKEW = 30_000;
const LIMIT = 1024;
/** The cap of the upload route: large enough for bodies that pass the upload gate. */
const UPLOAD_LIMIT = 1024 * 1024;
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const enc = new TextEncoder();

const routes: Route[] = [
  {
    method: "POST",
    path: "/v1/echo",
    // readJson reuses the bytes the middleware read and verified.
    handler: async (req, ctx) => json(200, { caller: ctx.caller, got: await readJson(req, ctx) }),
  },
  {
    method: "POST",
    path: "/v1/upload",
    maxBodyBytes: UPLOAD_LIMIT,
    handler: async (req, ctx) => json(200, { size: (await readBody(req, ctx)).byteLength }),
  },
  {
    method: "GET",
    path: "/v1/whoami",
    handler: (_req, ctx) => json(200, { caller: ctx.caller }),
  },
  {
    method: "GET",
    path: "/healthz",
    public: true,
    handler: (_req, ctx) => json(200, { status: "ok", caller: ctx.caller ?? null }),
  },
];

interface Env {
  base: string;
  port: number;
  store: Store;
  logged: string[];
  alice: Ed25519KeyPair;
  /** One large body per user, two in total. */
  gate: UploadGate;
}

/**
 * A real SQLite store in a temp dir with one active user (alice), and the app
 * behind the middleware served over loopback. `wrap` lets a test interpose on
 * the store the middleware sees.
 */
async function withServer(
  fn: (env: Env) => Promise<void>,
  wrap: (s: Store) => Store = (s) => s,
  now?: () => number,
  opts: { skewMs?: number } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-auth-" });
  const store = await openSqliteStore(`${dir}/control.db`);
  const logged: string[] = [];
  const log = createLogger("test", { sink: (l) => logged.push(l) });
  const alice = keyPairFromSeed(generateSeed());
  await store.addUser({
    signPub: hex(alice.publicKey),
    kexPub: null,
    kexSig: null,
    handle: "alice",
    role: "member",
  });
  // The per-source bound (all of these come from 127.0.0.1) is above the
  // total here, so these tests see the per-user and node bounds; the source
  // bound is checked against a real serve in upload_gate_test.ts.
  const gate = new UploadGate({ perUser: 1, perSource: 3, total: 2 });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    createApp({
      routes,
      log,
      maxBodyBytes: LIMIT,
      middleware: [
        requireSignedRequests({
          store: wrap(store),
          skewMs: opts.skewMs ?? SKEW,
          now,
          uploads: gate,
          // These tests hold places with a few bytes on purpose; the rate a
          // body must keep is checked in upload_gate_test.ts.
          minUploadRate: { bytesPerSecond: 1, graceMs: 60_000 },
        }),
      ],
    }),
  );
  try {
    const port = server.addr.port;
    await fn({ base: `http://127.0.0.1:${port}`, port, store, logged, alice, gate });
  } finally {
    await server.shutdown();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Wraps the store, replacing some methods; the rest go to the original. */
function overriding(replace: (s: Store) => Partial<Store>): (s: Store) => Store {
  return (s) => {
    const replaced: Partial<Store> = replace(s);
    return new Proxy(s, {
      get(target, prop, receiver) {
        if (Object.hasOwn(replaced, prop)) return replaced[prop as keyof Store];
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  };
}

async function errorOf(res: Response): Promise<{ status: number; error: string; message: string }> {
  const body = await res.json();
  return { status: res.status, error: body.error, message: body.message };
}

/** A POST /v1/echo signed by `signer`, with overridable parts. */
function signedEcho(
  signer: Ed25519KeyPair,
  body: string,
  opts: { now?: number; headers?: Record<string, string>; sendBody?: string } = {},
): RequestInit {
  const headers = signRequest(signer, {
    method: "POST",
    pathAndQuery: "/v1/echo",
    body: enc.encode(body),
    now: opts.now,
  });
  return {
    method: "POST",
    headers: { ...headers, ...opts.headers, "content-type": "application/json" },
    body: opts.sendBody ?? body,
  };
}

Deno.test("a validly signed request reaches the handler with ctx.caller set", async () => {
  await withServer(async ({ base, alice }) => {
    const res = await signedFetch(alice, `${base}/v1/echo`, {
      method: "POST",
      body: '{"hello":"world"}',
    });
    assertEquals(res.status, 200);
    assertEquals(await res.json(), { caller: hex(alice.publicKey), got: { hello: "world" } });
    const get = await signedFetch(alice, `${base}/v1/whoami?x=1&y=%20`);
    assertEquals(await get.json(), { caller: hex(alice.publicKey) });
  });
});

Deno.test("an unsigned request is refused with 401 unauthenticated", async () => {
  await withServer(async ({ base }) => {
    const res = await fetch(`${base}/v1/echo`, { method: "POST", body: "{}" });
    assertEquals(await errorOf(res), {
      status: 401,
      error: "unauthenticated",
      message: "request authentication failed",
    });
  });
});

Deno.test("a request signed by another key but claiming a registered key is bad_signature", async () => {
  await withServer(async ({ base, alice }) => {
    const mallory = keyPairFromSeed(generateSeed());
    const res = await fetch(
      `${base}/v1/echo`,
      signedEcho(mallory, "{}", { headers: { [AUTH_HEADERS.key]: hex(alice.publicKey) } }),
    );
    assertEquals((await errorOf(res)).error, "bad_signature");
    assertEquals(res.status, 401);
  });
});

Deno.test("the same signed request sent twice is admitted once, then replayed", async () => {
  await withServer(async ({ base, alice }) => {
    const init = signedEcho(alice, '{"n":1}');
    const first = await fetch(`${base}/v1/echo`, init);
    assertEquals(first.status, 200);
    await first.body?.cancel();
    const second = await fetch(`${base}/v1/echo`, init);
    assertEquals(await errorOf(second), {
      status: 401,
      error: "replayed",
      message: "request authentication failed",
    });
  });
});

Deno.test("timestamps two skews in the past or future are stale_request", async () => {
  await withServer(async ({ base, alice }) => {
    for (const offset of [-2 * SKEW, 2 * SKEW]) {
      const res = await fetch(
        `${base}/v1/echo`,
        signedEcho(alice, "{}", { now: Date.now() + offset }),
      );
      assertEquals(await errorOf(res), {
        status: 401,
        error: "stale_request",
        message: "request authentication failed",
      }, `offset ${offset}`);
    }
  });
});

Deno.test("a correctly signed request by a key not on the allowlist is unknown_key", async () => {
  await withServer(async ({ base }) => {
    const stranger = keyPairFromSeed(generateSeed());
    const res = await signedFetch(stranger, `${base}/v1/echo`, { method: "POST", body: "{}" });
    assertEquals(await errorOf(res), {
      status: 401,
      error: "unknown_key",
      message: "request authentication failed",
    });
  });
});

Deno.test("a revoked user's correctly signed request is 403 revoked", async () => {
  await withServer(async ({ base, store, alice }) => {
    await store.revokeUser(hex(alice.publicKey));
    const res = await signedFetch(alice, `${base}/v1/echo`, { method: "POST", body: "{}" });
    assertEquals((await errorOf(res)).error, "revoked");
    assertEquals(res.status, 403);
  });
});

Deno.test("a body changed after signing is bad_signature and never reaches the handler", async () => {
  await withServer(async ({ base, alice }) => {
    const res = await fetch(
      `${base}/v1/echo`,
      signedEcho(alice, '{"amount":1}', { sendBody: '{"amount":9}' }),
    );
    assertEquals(await errorOf(res), {
      status: 401,
      error: "bad_signature",
      message: "request authentication failed",
    });
  });
});

Deno.test("a signature for another path or query is bad_signature", async () => {
  await withServer(async ({ base, alice }) => {
    const headers = signRequest(alice, { method: "GET", pathAndQuery: "/v1/whoami?x=1" });
    const res = await fetch(`${base}/v1/whoami?x=2`, { headers });
    assertEquals((await errorOf(res)).error, "bad_signature");
  });
});

Deno.test("public routes pass unsigned and get no caller", async () => {
  await withServer(async ({ base }) => {
    const res = await fetch(`${base}/healthz`);
    assertEquals(res.status, 200);
    assertEquals(await res.json(), { status: "ok", caller: null });
  });
});

Deno.test("a closed store fails closed with 503 auth_unavailable, logged without secrets", async () => {
  await withServer(async ({ base, store, alice, logged }) => {
    await store.close();
    const init = signedEcho(alice, '{"secret":"do-not-log"}');
    const res = await fetch(`${base}/v1/echo`, init);
    assertEquals(await errorOf(res), {
      status: 503,
      error: "auth_unavailable",
      message: "authentication is temporarily unavailable",
    });
    const line = logged.find((l) => l.includes("request authentication unavailable"));
    assert(line, "the reason is logged");
    assert(line.includes("StoreUnavailableError"), line);
    const signature = (init.headers as Record<string, string>)[AUTH_HEADERS.signature];
    for (const l of logged) {
      assert(!l.includes(signature), "the signature is not logged");
      assert(!l.includes("do-not-log"), "the body is not logged");
    }
  });
});

Deno.test("a nonce store that throws any error fails closed with 503", async () => {
  await withServer(
    async ({ base, alice, logged }) => {
      const res = await signedFetch(alice, `${base}/v1/echo`, { method: "POST", body: "{}" });
      assertEquals((await errorOf(res)).error, "auth_unavailable");
      assertEquals(res.status, 503);
      assert(logged.some((l) => l.includes("rememberNonce") && l.includes("disk on fire")));
    },
    overriding(() => ({
      rememberNonce: () => Promise.reject(new TypeError("disk on fire")),
    })),
  );
});

Deno.test("refused requests do not burn their nonce: only authenticated callers write nonces", async () => {
  const nonces: string[] = [];
  await withServer(
    async ({ base, alice, store }) => {
      const nonce = "refused-nonce-0000000000";
      const body = enc.encode("{}");
      const sign = (kp: Ed25519KeyPair) =>
        signRequest(kp, { method: "POST", pathAndQuery: "/v1/echo", body, nonce });
      // Forged, unknown and revoked callers all use alice's nonce first.
      const mallory = keyPairFromSeed(generateSeed());
      const forged = { ...sign(mallory), [AUTH_HEADERS.key]: hex(alice.publicKey) };
      const r1 = await fetch(`${base}/v1/echo`, { method: "POST", headers: forged, body });
      assertEquals((await errorOf(r1)).error, "bad_signature");
      const r2 = await fetch(`${base}/v1/echo`, { method: "POST", headers: sign(mallory), body });
      assertEquals((await errorOf(r2)).error, "unknown_key");
      const carol = keyPairFromSeed(generateSeed());
      await store.addUser({
        signPub: hex(carol.publicKey),
        kexPub: null,
        kexSig: null,
        handle: "carol",
        role: "member",
      });
      await store.revokeUser(hex(carol.publicKey));
      const r3 = await fetch(`${base}/v1/echo`, { method: "POST", headers: sign(carol), body });
      assertEquals((await errorOf(r3)).error, "revoked");
      assertEquals(nonces, [], "no nonce written for refused callers");

      const ok = await fetch(`${base}/v1/echo`, { method: "POST", headers: sign(alice), body });
      assertEquals(ok.status, 200);
      await ok.body?.cancel();
      assertEquals(nonces, [`${hex(alice.publicKey)}:${nonce}`]);
    },
    overriding((s) => ({
      rememberNonce: (nonce: string, expiresAt: number, now?: number) => {
        nonces.push(nonce);
        return s.rememberNonce(nonce, expiresAt, now);
      },
    })),
  );
});

Deno.test("nonces are kept until timestamp + skew, namespaced by key", async () => {
  const writes: Array<{ nonce: string; expiresAt: number }> = [];
  await withServer(
    async ({ base, alice }) => {
      const now = Date.now();
      const res = await fetch(`${base}/v1/echo`, signedEcho(alice, "{}", { now }));
      assertEquals(res.status, 200);
      await res.body?.cancel();
      assertEquals(writes.length, 1);
      assertEquals(writes[0].expiresAt, now + SKEW);
      assert(writes[0].nonce.startsWith(`${hex(alice.publicKey)}:`), writes[0].nonce);
    },
    overriding((s) => ({
      rememberNonce: (nonce: string, expiresAt: number, now?: number) => {
        writes.push({ nonce, expiresAt });
        return s.rememberNonce(nonce, expiresAt, now);
      },
    })),
  );
});

Deno.test("a request whose nonce write completes after its window closes is stale", async () => {
  // A slow store: by the time the nonce is written the timestamp has aged
  // past the window, so a prune could already have removed a copy's nonce.
  let clock = Date.now();
  await withServer(
    async ({ base, alice }) => {
      const res = await fetch(`${base}/v1/echo`, signedEcho(alice, "{}", { now: clock }));
      assertEquals((await errorOf(res)).error, "stale_request");
    },
    overriding((s) => ({
      rememberNonce: async (nonce: string, expiresAt: number, now?: number) => {
        const fresh = await s.rememberNonce(nonce, expiresAt, now);
        clock += SKEW;
        return fresh;
      },
    })),
    () => clock,
  );
});

Deno.test("an oversized signed body is 413, not an auth error", async () => {
  await withServer(async ({ base, alice }) => {
    const big = JSON.stringify({ pad: "x".repeat(LIMIT * 2) });
    const res = await signedFetch(alice, `${base}/v1/echo`, { method: "POST", body: big });
    assertEquals((await errorOf(res)).error, "too_large");
    assertEquals(res.status, 413);
  });
});

Deno.test("a small-order key with an all-zero signature is refused even if registered", async () => {
  await withServer(async ({ base, store }) => {
    const identity = "01" + "00".repeat(31);
    // Registered on purpose: only the signature check may stop it.
    await store.addUser({
      signPub: identity,
      kexPub: null,
      kexSig: null,
      handle: "identity",
      role: "admin",
    });
    const res = await fetch(`${base}/v1/echo`, {
      method: "POST",
      headers: {
        [AUTH_HEADERS.key]: identity,
        [AUTH_HEADERS.timestamp]: String(Date.now()),
        [AUTH_HEADERS.nonce]: "AAAAAAAAAAAAAAAAAAAAAA",
        [AUTH_HEADERS.signature]: Buffer.from(new Uint8Array(64)).toString("base64url"),
      },
      body: "{}",
    });
    assertEquals(res.status, 401);
    assertEquals((await errorOf(res)).error, "bad_signature");
  });
});

Deno.test("a Host header with URL syntax cannot reroute a signed request", async () => {
  await withServer(async ({ base, alice }) => {
    // Signed for POST /v1/other. With Host "x\\v1\\echo#", req.url becomes
    // "http://x\\v1\\echo#/v1/other": the router's URL parser routes it to
    // /v1/echo, while the text after the first "/" is still the signed path.
    const body = enc.encode("{}");
    const headers = signRequest(alice, { method: "POST", pathAndQuery: "/v1/other", body });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(base).port) });
    let response = "";
    try {
      const head = [
        "POST /v1/other HTTP/1.1",
        "Host: x\\v1\\echo#",
        "Connection: close",
        "Content-Length: 2",
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
        "",
        "",
      ].join("\r\n");
      await conn.write(enc.encode(head + "{}"));
      const buf = new Uint8Array(4096);
      for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
        response += new TextDecoder().decode(buf.subarray(0, n));
      }
    } finally {
      conn.close();
    }
    assert(response.startsWith("HTTP/1.1 401 "), response);
    assert(response.includes('"error":"unauthenticated"'), response);
  });
});

Deno.test("the nonce pruner removes expired nonces and stops cleanly", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-prune-" });
  const store = await openSqliteStore(`${dir}/control.db`);
  const logged: string[] = [];
  let done!: () => void;
  const firstPrune = new Promise<void>((r) => (done = r));
  const log = createLogger("test", {
    level: "debug",
    sink: (l) => {
      logged.push(l);
      if (l.includes("nonces pruned")) done();
    },
  });
  let stop = () => {};
  try {
    const now = Date.now();
    assert(await store.rememberNonce("old-1", now - 10_000, now - 20_000));
    assert(await store.rememberNonce("old-2", now - 5_000, now - 20_000));
    assert(await store.rememberNonce("live", now + 600_000, now));

    const results: number[] = [];
    const counting = overriding((s) => ({
      pruneNonces: async (at: number) => {
        const n = await s.pruneNonces(at);
        results.push(n);
        return n;
      },
    }))(store);
    stop = startNoncePruner(counting, log, 10);
    await firstPrune;
    stop();
    const calls = results.length;
    assertEquals(results[0], 2, "both expired nonces removed");
    assert(logged.some((l) => l.includes('"removed":2')), "pruning is logged with its count");
    // The live nonce survived: remembering it again is a replay.
    assertEquals(await store.rememberNonce("live", now + 600_000), false);
    await new Promise((r) => setTimeout(r, 50));
    assertEquals(results.length, calls, "no prune after stop");
  } finally {
    stop();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a failing prune is logged, not thrown, and the pruner keeps going", async () => {
  const logged: string[] = [];
  const log = createLogger("test", { sink: (l) => logged.push(l) });
  let calls = 0;
  let twice!: () => void;
  const reachedTwice = new Promise<void>((r) => (twice = r));
  const broken = {
    pruneNonces: () => {
      calls++;
      if (calls === 2) twice();
      return Promise.reject(new Error("store is closed"));
    },
  } as unknown as Store;
  const stop = startNoncePruner(broken, log, 5);
  try {
    await reachedTwice;
  } finally {
    stop();
  }
  // The rejected prune's handler logs after the second call has started.
  await waitFor(
    () => logged.some((l) => l.includes("nonce pruning failed") && l.includes("store is closed")),
    { timeoutMs: 2000, what: "the failed prune to be logged" },
  );
});

/** A registered, active user of the test store. */
async function registered(store: Store, handle: string): Promise<Ed25519KeyPair> {
  const kp = keyPairFromSeed(generateSeed());
  await store.addUser({
    signPub: hex(kp.publicKey),
    kexPub: null,
    kexSig: null,
    handle,
    role: "member",
  });
  return kp;
}

/** Auth headers for a POST to `path` of `body`, signed by `signer`. */
function uploadHeaders(
  signer: Ed25519KeyPair,
  path: string,
  body: Uint8Array,
  now?: number,
): Record<string, string> {
  return signRequest(signer, { method: "POST", pathAndQuery: path, body, now });
}

Deno.test("headers, clock and key are judged before a byte of the body is read", async () => {
  await withServer(async ({ port, store, alice }) => {
    const stranger = keyPairFromSeed(generateSeed());
    const revoked = await registered(store, "revoked");
    await store.revokeUser(hex(revoked.publicKey));
    const body = new Uint8Array(1000);
    const cases: Array<[string, Record<string, string>, number, string]> = [
      ["no auth headers", {}, 401, "unauthenticated"],
      [
        "a stale timestamp",
        uploadHeaders(alice, "/v1/upload", body, Date.now() - 2 * SKEW),
        401,
        "stale_request",
      ],
      ["a key nobody registered", uploadHeaders(stranger, "/v1/upload", body), 401, "unknown_key"],
      ["a revoked key", uploadHeaders(revoked, "/v1/upload", body), 403, "revoked"],
    ];
    for (const size of [1000, 200_000]) {
      for (const [what, headers, status, error] of cases) {
        // The body is announced but never sent: an answer proves nothing of
        // it was waited for.
        const x = await rawPost(port, "/v1/upload", {
          ...headers,
          "content-length": String(size),
        });
        const res = await x.response();
        assertEquals([res.status, res.body.error], [status, error], `${what}, ${size} bytes`);
      }
    }
  });
});

Deno.test("a declared length over the route's cap is 413 before the body is read or the key checked", async () => {
  await withServer(async ({ port, alice }) => {
    const x = await rawPost(port, "/v1/upload", {
      ...uploadHeaders(alice, "/v1/upload", new Uint8Array(0)),
      "content-length": String(UPLOAD_LIMIT + 1),
    });
    assertEquals((await x.response()).status, 413);
    // Refused by Deno's HTTP parser or by declaredLength: a 400 either way.
    const y = await rawPost(port, "/v1/upload", { "content-length": "12abc" });
    assertEquals((await y.response()).status, 400);
  });
});

Deno.test("a Content-Length unibus sees malformed is 400 bad_content_length in JSON; one the HTTP parser refuses is a bare 400", async () => {
  await withServer(async ({ port, alice }) => {
    // Two Content-Length lines of one value reach the handler joined
    // ("5, 5"): not a byte count. (The second line rides in the first's value.)
    const joined = await rawPost(port, "/v1/upload", {
      ...uploadHeaders(alice, "/v1/upload", new TextEncoder().encode("hello")),
      "content-length": "5\r\ncontent-length: 5",
    }, "hello");
    const res = await joined.response();
    assertEquals([res.status, res.body.error], [400, "bad_content_length"]);
    // Not a number, or two values: hyper answers before any handler, with no
    // body (docs/api.md says so).
    for (const bad of ["abc", "-1", "5, 5", "5\r\ncontent-length: 6"]) {
      const x = await rawPost(port, "/v1/upload", { "content-length": bad }, "hello");
      assertEquals(await x.response(), { status: 400, body: {} }, bad);
    }
  });
});

Deno.test("a chunked body is refused with 413 as soon as it crosses the cap", async () => {
  await withServer(async ({ port, alice }) => {
    const x = await rawPost(port, "/v1/upload", {
      ...uploadHeaders(alice, "/v1/upload", new Uint8Array(0)),
      "transfer-encoding": "chunked",
    });
    const chunk = 64 * 1024;
    const frame = enc.encode(`${chunk.toString(16)}\r\n${"x".repeat(chunk)}\r\n`);
    // One chunk past the cap, and never the terminating chunk: only a
    // server that counts while it reads can answer.
    for (let sent = 0; sent <= UPLOAD_LIMIT; sent += chunk) await x.send(frame);
    const res = await x.response();
    assertEquals([res.status, res.body.error], [413, "too_large"]);
  });
});

Deno.test("large uploads in flight are bounded per user and in total (429 naming the bound)", async () => {
  await withServer(async ({ port, store, alice, gate }) => {
    const bob = await registered(store, "bob");
    const carol = await registered(store, "carol");
    const body = new Uint8Array(200_000).fill(7);
    const start = async (who: Ed25519KeyPair) =>
      await rawPost(port, "/v1/upload", {
        ...uploadHeaders(who, "/v1/upload", body),
        "content-length": String(body.byteLength),
      }, body.subarray(0, 1000));
    const inFlight = async (n: number) => {
      const deadline = Date.now() + 5000;
      while (gate.inFlight !== n) {
        if (Date.now() > deadline) throw new Error(`expected ${n} uploads in flight`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };

    const first = await start(alice);
    await inFlight(1);
    const again = await (await start(alice)).response();
    assertEquals(again.status, 429);
    assertEquals(again.body, {
      error: "too_many_uploads",
      message: "too many large uploads at once (uploads_per_user: 1 of 1); retry shortly",
      limit: "uploads_per_user",
      max: 1,
      used: 1,
    });
    const second = await start(bob);
    await inFlight(2);
    const full = await (await start(carol)).response();
    assertEquals([full.status, full.body.limit, full.body.used], [429, "uploads", 2]);

    // Finishing the uploads gives the places back.
    await first.send(body.subarray(1000));
    assertEquals(await first.response(), { status: 200, body: { size: body.byteLength } });
    await second.send(body.subarray(1000));
    assertEquals((await second.response()).status, 200);
    await inFlight(0);
    const later = await start(carol);
    await later.send(body.subarray(1000));
    assertEquals((await later.response()).status, 200);

    // A bad signature holds its place only while its body is read.
    const forged = await rawPost(port, "/v1/upload", {
      ...uploadHeaders(bob, "/v1/upload", body),
      [AUTH_HEADERS.key]: hex(alice.publicKey),
      "content-length": String(body.byteLength),
    }, body);
    assertEquals((await forged.response()).body.error, "bad_signature");
    await inFlight(0);
  });
});

Deno.test("a body still arriving when its signature goes stale is 408 body_timeout", async () => {
  await withServer(async ({ port, alice, gate }) => {
    const body = new Uint8Array(200_000);
    // Signed so that the window closes 300 ms from now.
    const x = await rawPost(port, "/v1/upload", {
      ...uploadHeaders(alice, "/v1/upload", body, Date.now() - SKEW + 300),
      "content-length": String(body.byteLength),
    }, body.subarray(0, 10));
    const res = await x.response(5000);
    assertEquals([res.status, res.body.error], [408, "body_timeout"]);
    assertEquals(gate.inFlight, 0);
  });
});

Deno.test("a timestamp in the future does not stretch the body deadline past now + skew", async () => {
  const skew = 3000;
  await withServer(
    async ({ port, alice, gate }) => {
      const body = new Uint8Array(200_000);
      const t0 = Date.now();
      // Claimed almost a whole window ahead: still fresh, so admitted. Counted
      // from the claim, its body could arrive until t0 + 2 × skew.
      const x = await rawPost(port, "/v1/upload", {
        ...uploadHeaders(alice, "/v1/upload", body, t0 + skew - 100),
        "content-length": String(body.byteLength),
      }, body.subarray(0, 10));
      const res = await x.response(4 * skew);
      const took = Date.now() - t0;
      assertEquals([res.status, res.body.error], [408, "body_timeout"]);
      assert(took < skew + 1500, `cut after ${took} ms; the deadline is ${skew} ms from now`);
      assertEquals(gate.inFlight, 0);
    },
    undefined,
    undefined,
    { skewMs: skew },
  );
});
