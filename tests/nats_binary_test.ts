import { NatsBinaryNotFoundError, resolveEmbeddedNatsServer } from "../server/nats/binary.ts";
import { assertEquals, assertMatch, assertRejects } from "./helpers/assert.ts";

async function sha256Hex(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", data);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** An "artifact" dir with a fake embedded nats-server of the given mode. */
async function embedded(mode: number) {
  const dir = await Deno.makeTempDir({ prefix: "unibus-embedded-" });
  const bytes = new TextEncoder().encode("#!/bin/sh\necho nats-server\n");
  await Deno.writeFile(`${dir}/nats-server`, bytes, { mode });
  await Deno.chmod(`${dir}/nats-server`, mode);
  await Deno.writeTextFile(`${dir}/nats-server.sha256`, `${await sha256Hex(bytes)}\n`);
  return { dir, binary: `${dir}/nats-server`, sha256File: `${dir}/nats-server.sha256` };
}

Deno.test("no checksum file beside the sources: not an artifact, nothing embedded", async () => {
  assertEquals(
    await resolveEmbeddedNatsServer({
      binary: "/nonexistent/nats-server",
      sha256File: "/nonexistent/nats-server.sha256",
      cacheBase: null,
    }),
    null,
  );
});

Deno.test("an unpacked embedded nats-server is used in place once its SHA-256 matches", async () => {
  const e = await embedded(0o755);
  try {
    assertEquals(await resolveEmbeddedNatsServer({ ...e, cacheBase: null }), e.binary);
    await Deno.writeTextFile(e.binary, "tampered", { append: true });
    await assertRejects(
      () => resolveEmbeddedNatsServer({ ...e, cacheBase: null }),
      NatsBinaryNotFoundError,
      "does not match its pinned SHA-256",
    );
  } finally {
    await Deno.remove(e.dir, { recursive: true });
  }
});

Deno.test("a non-executable embedded copy (deno compile) is extracted once into a 0700 cache dir and checked", async () => {
  const e = await embedded(0o644);
  const cache = await Deno.makeTempDir({ prefix: "unibus-cache-" });
  try {
    const path = await resolveEmbeddedNatsServer({ ...e, cacheBase: `${cache}/unibus` });
    assertMatch(path!, new RegExp(`^${cache}/unibus/nats-server-[0-9a-f]{16}/nats-server$`));
    assertEquals((await Deno.stat(path!)).mode! & 0o777, 0o700);
    assertEquals((await Deno.stat(path!.replace(/\/nats-server$/, ""))).mode! & 0o777, 0o700);
    assertEquals(await resolveEmbeddedNatsServer({ ...e, cacheBase: `${cache}/unibus` }), path);
    // Altered in the cache after extraction: refused, not silently replaced.
    await Deno.writeTextFile(path!, "x", { append: true });
    await assertRejects(
      () => resolveEmbeddedNatsServer({ ...e, cacheBase: `${cache}/unibus` }),
      NatsBinaryNotFoundError,
      "extracted nats-server",
    );
  } finally {
    await Deno.remove(e.dir, { recursive: true });
    await Deno.remove(cache, { recursive: true });
  }
});
