import { NativeNkeyPair, Prefix } from "../lib/auth/nkey.ts";
import { generateIdentity } from "../lib/identity/identity.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { addBusUser, connectAs } from "./helpers/bus.ts";
import { freePort } from "./helpers/ports.ts";
import {
  type CliRun,
  runUnibus as unibus,
  type ServeUnderTest,
  startServe,
  stderrLines,
} from "./helpers/serve_process.ts";
import { openServeStore } from "./helpers/serve_store.ts";

/** A `serve --store kv --bus-auth enforce` with its internal identity persisted. */
async function kvNode(): Promise<{ s: ServeUnderTest; idFile: string; stop(): Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-userkv-" });
  const idFile = `${dir}/internal.id`;
  const s = await startServe({
    extraArgs: ["--store", "kv", "--bus-auth", "enforce", "--internal-id-file", idFile],
  });
  return {
    s,
    idFile,
    async stop() {
      assertEquals((await s.stop()).code, 0);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function kvArgs(n: { s: ServeUnderTest; idFile: string }): string[] {
  return [
    "--store",
    "kv",
    "--nats-url",
    `nats://127.0.0.1:${n.s.natsPort}`,
    "--internal-id-file",
    n.idFile,
  ];
}

function oneLineFailure(r: CliRun, code: number, re: RegExp, label: string): void {
  assertEquals(r.code, code, `${label}: exit status (stderr: ${r.stderr})`);
  const lines = stderrLines(r);
  assertEquals(lines.length, 1, `${label}: one stderr line, got ${JSON.stringify(r.stderr)}`);
  assertMatch(lines[0], re, label);
}

Deno.test("user add --store kv writes the live allowlist, prints replication, and a re-add changes nothing", async () => {
  const n = await kvNode();
  try {
    const ada = generateIdentity("ada");
    const add = await unibus([
      "user",
      "add",
      "--handle",
      "ada",
      "--sign-pub",
      ada.signPubHex,
      "--role",
      "admin",
      ...kvArgs(n),
    ]);
    assertEquals(add.code, 0, add.stderr);
    assertMatch(add.stdout, new RegExp(`added user ${ada.signPubHex} .*role admin.* to the KV`));
    assertMatch(add.stdout, /KV_UNIBUS_users: R1, not replicated \(msgs=1\)/);

    const list = await unibus(["user", "list", "--json", ...kvArgs(n)]);
    assertEquals(list.code, 0, list.stderr);
    const users = JSON.parse(list.stdout);
    assertEquals(
      users.map((u: { handle: string; role: string; status: string }) => [
        u.handle,
        u.role,
        u.status,
      ]),
      [["ada", "admin", "active"]],
    );
    const table = await unibus(["user", "list", ...kvArgs(n)]);
    assertMatch(table.stdout, /HANDLE\s+ROLE\s+STATUS/);

    // The same key again, even as a member with another handle: refused, unchanged.
    const again = await unibus([
      "user",
      "add",
      "--handle",
      "impostor",
      "--sign-pub",
      ada.signPubHex,
      ...kvArgs(n),
    ]);
    oneLineFailure(again, 1, /already registered \(unchanged\)/, "re-add");
    const after = JSON.parse((await unibus(["user", "list", "--json", ...kvArgs(n)])).stdout);
    assertEquals(after, users);

    // The running node admits the user at once: no restart.
    const nc = await connectAs(n.s.natsPort, {
      identity: ada,
      kp: new NativeNkeyPair(Prefix.User, ada.signSeed),
      hex: ada.signPubHex,
    });
    await nc.close();
  } finally {
    await n.stop();
  }
});

Deno.test("user revoke --store kv cuts the user's live connection within a second", async () => {
  const n = await kvNode();
  const store = await openServeStore(n.s, "kv", n.idFile);
  try {
    const bob = await addBusUser(store, "bob");
    const nc = await connectAs(n.s.natsPort, bob);
    const closed = nc.closed().then(() => performance.now());
    const r = await unibus(["user", "revoke", bob.hex, ...kvArgs(n)]);
    const revokedBy = performance.now(); // the write landed before the CLI exited
    assertEquals(r.code, 0, r.stderr);
    assertMatch(r.stdout, new RegExp(`revoked user ${bob.hex}`));
    assertMatch(r.stdout, /KV_UNIBUS_users: R1, not replicated/);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const cutAt = await Promise.race([
      closed,
      new Promise<null>((res) => timer = setTimeout(() => res(null), 1000)),
    ]);
    clearTimeout(timer);
    assert(cutAt !== null, "the connection was not cut within a second of the revoke");
    assert(cutAt - revokedBy < 1000);
    assertEquals((await store.getUser(bob.hex))?.status, "revoked");
    const again = await unibus(["user", "revoke", bob.hex, ...kvArgs(n)]);
    assertEquals(again.code, 0);
    assertMatch(again.stdout, /already revoked \(unchanged\)/);
  } finally {
    await store.close();
    await n.stop();
  }
});

Deno.test("user --store kv against an unreachable endpoint fails in one line within a few seconds", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-userkv-" });
  try {
    const idFile = `${dir}/internal.id`;
    // A real identity file, so only the endpoint is wrong.
    const gen = await unibus(["identity", "new", "--out", idFile, "--handle", "internal"]);
    assertEquals(gen.code, 0, gen.stderr);
    const t0 = performance.now();
    const r = await unibus([
      "user",
      "list",
      "--store",
      "kv",
      "--nats-url",
      `nats://127.0.0.1:${freePort()}`,
      "--internal-id-file",
      idFile,
    ]);
    const ms = performance.now() - t0;
    oneLineFailure(r, 1, /cannot reach NATS at nats:\/\/127\.0\.0\.1:\d+/, "unreachable");
    assert(ms < 8000, `took ${Math.round(ms)} ms`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("user --store kv refuses a remote --nats-url without --ca and a missing identity file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-userkv-" });
  try {
    const sign = generateIdentity("x").signPubHex;
    const remote = await unibus([
      "user",
      "add",
      "--handle",
      "x",
      "--sign-pub",
      sign,
      "--store",
      "kv",
      "--nats-url",
      "nats://203.0.113.1:4250",
      "--internal-id-file",
      `${dir}/internal.id`,
    ]);
    oneLineFailure(remote, 2, /is not loopback: pass --ca/, "remote without --ca");
    const missing = await unibus([
      "user",
      "list",
      "--store",
      "kv",
      "--nats-url",
      `nats://127.0.0.1:${freePort()}`,
      "--internal-id-file",
      `${dir}/nope.id`,
    ]);
    oneLineFailure(missing, 1, /cannot load --internal-id-file: .*nope\.id/, "missing id file");
    assertEquals([...Deno.readDirSync(dir)].length, 0, "no identity file was created");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
