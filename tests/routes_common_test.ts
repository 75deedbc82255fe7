import { ConflictError, InvalidInputError, StoreUnavailableError } from "../lib/store/store.ts";
import type { HttpError } from "../server/http/app.ts";
import { KeyedLock, toHttpError } from "../server/http/routes/common.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

Deno.test("KeyedLock runs one function at a time per key, in order, and survives failures", async () => {
  const lock = new KeyedLock();
  const log: string[] = [];
  const step = (name: string, ms: number, fail = false) => async () => {
    log.push(`${name}:start`);
    await new Promise((r) => setTimeout(r, ms));
    log.push(`${name}:end`);
    if (fail) throw new Error(name);
    return name;
  };
  const results = await Promise.allSettled([
    lock.run("room", step("a", 20, true)),
    lock.run("room", step("b", 1)),
    lock.run("other", step("c", 1)),
  ]);
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
