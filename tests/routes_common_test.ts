import { ConflictError, InvalidInputError, StoreUnavailableError } from "../lib/store/store.ts";
import type { HttpError } from "../server/http/app.ts";
import { KeyedLock, toHttpError } from "../server/http/routes/common.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

Deno.test("KeyedLock runs one function at a time per key, in order, and survives failures", async () => {
  const lock = new KeyedLock();
  const log: string[] = [];
  // "a" holds its key until "c" (another key) has finished, or gives up after
  // 2 s: whether the keys run side by side is then the log's order, not timing.
  const cDone = Promise.withResolvers<void>();
  const step = (name: string, wait: Promise<unknown>, fail = false) => async () => {
    log.push(`${name}:start`);
    await wait;
    log.push(`${name}:end`);
    if (name === "c") cDone.resolve();
    if (fail) throw new Error(name);
    return name;
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const cOrTimeout = Promise.race([
    cDone.promise,
    new Promise((r) => timer = setTimeout(r, 2000)),
  ]);
  const results = await Promise.allSettled([
    lock.run("room", step("a", cOrTimeout, true)),
    lock.run("room", step("b", Promise.resolve())),
    lock.run("other", step("c", Promise.resolve())),
  ]);
  clearTimeout(timer);
  assertEquals(results.map((r) => r.status), ["rejected", "fulfilled", "fulfilled"]);
  // "c" (another key) ran alongside "a"; "b" waited for "a" to finish.
  assert(log.indexOf("c:end") < log.indexOf("a:end"), log.join(" "));
  assert(log.indexOf("a:end") < log.indexOf("b:start"), log.join(" "));
});

Deno.test("store errors map to 4xx/503 answers and other errors pass through", () => {
  const bad = toHttpError(new InvalidInputError("id", "bad")) as HttpError;
  assertEquals([bad.status, bad.code], [400, "invalid_input"]);
  const down = toHttpError(new StoreUnavailableError("closed")) as HttpError;
  assertEquals([down.status, down.code], [503, "store_unavailable"]);
  const conflict = toHttpError(new ConflictError("moved")) as HttpError;
  assertEquals([conflict.status, conflict.code], [409, "conflict"]);
  const bug = new TypeError("bug");
  assertEquals(toHttpError(bug) === bug, true);
});
