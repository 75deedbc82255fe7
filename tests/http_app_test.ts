import { createApp, HttpError, json, readJson, type Route } from "../server/http/app.ts";
import { createLogger } from "../lib/log.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { waitFor } from "./helpers/wait.ts";

const logged: string[] = [];
const log = createLogger("test", { sink: (l) => logged.push(l) });

const routes: Route[] = [
  {
    method: "POST",
    path: "/echo",
    handler: async (req, ctx) => json(200, { got: await readJson(req, ctx) }),
  },
  {
    method: "GET",
    path: "/rooms/:id",
    handler: (_req, ctx) => json(200, { id: ctx.params.id }),
  },
  {
    method: "GET",
    path: "/teapot",
    handler: () => {
      throw new HttpError(418, "teapot", "short and stout");
    },
  },
  {
    method: "GET",
    path: "/boom",
    handler: () => {
      throw new Error("secret internal detail");
    },
  },
];

/** The app served over real HTTP on a free loopback port. */
async function withServer(fn: (base: string) => Promise<void>): Promise<void> {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    createApp({ routes, log, maxBodyBytes: 1024 }),
  );
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`);
  } finally {
    await server.shutdown();
  }
}

Deno.test("routes match literal segments and decode :params", async () => {
  await withServer(async (base) => {
    const res = await fetch(`${base}/rooms/a%20b`);
    assertEquals(res.status, 200);
    assertEquals(await res.json(), { id: "a b" });
  });
});

Deno.test("unknown paths and wrong methods get JSON 404 and 405", async () => {
  await withServer(async (base) => {
    const nf = await fetch(`${base}/nope`);
    assertEquals(nf.status, 404);
    assertEquals(nf.headers.get("content-type"), "application/json");
    assertEquals((await nf.json()).error, "not_found");
    const na = await fetch(`${base}/echo`);
    assertEquals(na.status, 405);
    assertEquals((await na.json()).error, "method_not_allowed");
  });
});

Deno.test("bodies over the limit get 413, declared or streamed", async () => {
  await withServer(async (base) => {
    const declared = await fetch(`${base}/echo`, { method: "POST", body: "x".repeat(2048) });
    assertEquals(declared.status, 413);
    assertEquals((await declared.json()).error, "too_large");
    // No Content-Length: the limit must hold while reading the stream.
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 4; i++) c.enqueue(new Uint8Array(512).fill(32));
        c.close();
      },
    });
    const streamed = await fetch(`${base}/echo`, { method: "POST", body: stream });
    assertEquals(streamed.status, 413);
    await streamed.body?.cancel();
  });
});

Deno.test("malformed JSON gets 400 and valid JSON goes through", async () => {
  await withServer(async (base) => {
    const bad = await fetch(`${base}/echo`, { method: "POST", body: "{nope" });
    assertEquals(bad.status, 400);
    assertEquals((await bad.json()).error, "bad_json");
    const ok = await fetch(`${base}/echo`, { method: "POST", body: '{"a":1}' });
    assertEquals(await ok.json(), { got: { a: 1 } });
  });
});

Deno.test("handler errors map to their status; unexpected ones to a bare 500, logged", async () => {
  await withServer(async (base) => {
    const tea = await fetch(`${base}/teapot`);
    assertEquals(tea.status, 418);
    assertEquals(await tea.json(), { error: "teapot", message: "short and stout" });
    const boom = await fetch(`${base}/boom`);
    assertEquals(boom.status, 500);
    const body = await boom.text();
    assert(!body.includes("secret internal detail"), "no internals in the response");
    assert(logged.some((l) => l.includes("secret internal detail")), "the detail is logged");
  });
});

Deno.test("a body the client breaks off or mangles is a 400, not a logged 500", async () => {
  // Found by probing serve: an upload whose sender hung up, or whose chunked
  // framing was invalid, surfaced the reader's error as a 500 and an
  // error-level "request failed" line, so anyone could fill the error log.
  const answered: number[] = [];
  const app = createApp({ routes, log, maxBodyBytes: 1 << 20 });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const res = await app(req);
    answered.push(res.status);
    return res;
  });
  const before = logged.length;
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    await conn.write(new TextEncoder().encode(
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + "{".repeat(10),
    ));
    // Hang up with 990 bytes of the declared body still owed.
    conn.close();
    await waitFor(() => answered.length > 0 || null, { what: "the app to answer" });
    assertEquals(answered, [400]);
    const errors = logged.slice(before).filter((l) => l.includes('"level":"error"'));
    assertEquals(errors, [], "a broken-off body is the client's doing, not a server error");
  } finally {
    await server.shutdown();
  }
});
