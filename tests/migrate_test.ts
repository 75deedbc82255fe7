import { connect as connectClient } from "../lib/client/mod.ts";
import { generateIdentity, saveIdentity } from "../lib/identity/identity.ts";
import { openStore } from "../lib/store/mod.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { addBusUser } from "./helpers/bus.ts";
import {
  runUnibus as unibus,
  type ServeUnderTest,
  spawnUnibus,
  startServe,
} from "./helpers/serve_process.ts";
import { openServeStore } from "./helpers/serve_store.ts";

const dec = new TextDecoder();

function migrateArgs(s: ServeUnderTest, dataDir: string, idFile: string): string[] {
  return [
    "migrate-to-kv",
    "--db",
    `${dataDir}/unibus.db`,
    "--nats-url",
    `nats://127.0.0.1:${s.natsPort}`,
    "--internal-id-file",
    idFile,
  ];
}

/** migrate-to-kv into a stopped node's own data dir. */
function dataDirArgs(dataDir: string): string[] {
  return ["migrate-to-kv", "--data-dir", dataDir];
}

Deno.test("migrate-to-kv: stop the node, migrate its data dir, start it on KV: users, rooms, history, blobs kept", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "unibus-migrate-" });
  const idFile = `${dataDir}/internal.id`;
  const serveArgs = ["--bus-auth", "enforce", "--internal-id-file", idFile];
  let s: ServeUnderTest | null = await startServe({ dataDir, extraArgs: serveArgs });
  const opened: Array<{ close(): Promise<void> }> = [];
  try {
    // 1. A single node on SQLite with users, a persisted room with history, a blob.
    const sqlite = await openStore({ kind: "sqlite", path: `${dataDir}/unibus.db` });
    const alice = await addBusUser(sqlite, "alice", "admin");
    const bob = await addBusUser(sqlite, "bob");
    const carol = await addBusUser(sqlite, "carol");
    await sqlite.revokeUser(carol.hex);
    await sqlite.close();
    const client = async (who: typeof alice, node: ServeUnderTest) => {
      const c = await connectClient({
        natsServers: [`nats://127.0.0.1:${node.natsPort}`],
        ctrlUrls: [node.httpUrl],
        identity: who.identity,
      });
      opened.push(c);
      return c;
    };
    const ca = await client(alice, s);
    const room = await ca.createRoom("log.room", { encrypt: true, sign: true, persist: true });
    await ca.addMember(room, bob.hex);
    for (let i = 0; i < 3; i++) ca.publish(room, `entry-${i}`);
    await ca.flush();
    const blob = await ca.putBlob(room, new TextEncoder().encode("kept across the move"));
    await new Promise((r) => setTimeout(r, 200));
    for (const c of opened.splice(0)) await c.close();

    // 2. While it runs, its data dir is refused: one line, exit 1.
    const busy = await unibus(dataDirArgs(dataDir));
    assertEquals(busy.code, 1, busy.stderr);
    assertMatch(busy.stderr.trim(), /^unibus migrate-to-kv: .*in use by another unibus serve/);
    assertEquals(busy.stderr.trim().split("\n").length, 1);

    // 3. The runbook's order: stop it, migrate its data dir (a temporary
    //    nats-server on its JetStream store, where the room streams are).
    assertEquals((await s.stop()).code, 0);
    s = null;
    // A dry run writes nothing: a second one still has everything to copy.
    for (let i = 0; i < 2; i++) {
      const dry = await unibus([...dataDirArgs(dataDir), "--dry-run"]);
      assertEquals(dry.code, 0, dry.stderr);
      assertMatch(dry.stdout, /users: 3 to copy, 0 identical, 0 conflicting/);
      assertMatch(dry.stdout, /dry run: nothing written/);
    }
    const run = await unibus(dataDirArgs(dataDir));
    assertEquals(run.code, 0, run.stderr);
    assertMatch(run.stdout, /temporary nats-server on .* at nats:\/\/127\.0\.0\.1:\d+/);
    assertMatch(run.stdout, /users: 3 copied/);
    assertMatch(run.stdout, /rooms \(change logs, members, epochs\): 1 copied/);
    assertMatch(run.stdout, /blobs: 1 copied/);
    assertMatch(run.stdout, /read back: every copied record matches/);
    const again = await unibus(dataDirArgs(dataDir));
    assertEquals(again.code, 0, again.stderr);
    assertMatch(again.stdout, /users: 0 copied, 3 identical/);
    assertMatch(again.stdout, /rooms \(change logs, members, epochs\): 0 copied, 1 identical/);
    assertMatch(again.stdout, /sealed keys: 0 copied, \d+ identical/);
    assertMatch(again.stdout, /blobs: 0 copied, 1 identical/);
    // Nothing of the temporary server is left running or holding the dir.
    assert(!(await Deno.stat(`${dataDir}/nats-server.pid`).catch(() => null)));
    assert(!(await Deno.stat(`${dataDir}/serve.pid`).catch(() => null)));

    // 4. Start it again with --store kv on the same data dir.
    s = await startServe({ dataDir, extraArgs: ["--store", "kv", ...serveArgs] });
    const kv = await openServeStore(s, "kv", idFile);
    opened.push(kv);
    assertEquals((await kv.getUser(carol.hex))?.status, "revoked");

    // 5. Bob, on the KV node, reads the room's history and the blob.
    const cb = await client(bob, s);
    const { messages } = await cb.history(room);
    assertEquals(messages.map((m) => dec.decode(m.plaintext)), ["entry-0", "entry-1", "entry-2"]);
    assertEquals(dec.decode(await cb.getBlob(room, blob)), "kept across the move");

    // 6. clientcheck golden passes against the migrated node.
    const op = generateIdentity("operator");
    await saveIdentity(`${dataDir}/operator.id`, op);
    await kv.addUser({
      signPub: op.signPubHex,
      handle: "operator",
      role: "admin",
      kexPub: op.kexPubHex,
      kexSig: op.kexSigHex,
    });
    const cc = spawnUnibus([
      "clientcheck",
      "--identity-file",
      `${dataDir}/operator.id`,
      "--nats-seeds",
      `nats://127.0.0.1:${s.natsPort}`,
      "--ctrl-seeds",
      s.httpUrl,
      "--messages",
      "10",
      "--json",
    ]);
    const status = await cc.finished;
    assertEquals(status.code, 0, cc.stderr());
    assert(cc.lines.find((l) => l.event === "golden")?.ok === true);

    // 7. A record that differs in KV is reported, left alone, exit 1 (here
    //    through the running node, --nats-url).
    await kv.revokeUser(bob.hex);
    const conflict = await unibus(migrateArgs(s, dataDir, idFile));
    assertEquals(conflict.code, 1);
    assertMatch(conflict.stdout, new RegExp(`conflict: user ${bob.hex} differs in KV`));
    assertMatch(conflict.stderr, /1 record\(s\) differ in KV and were left unchanged/);
    assertEquals((await kv.getUser(bob.hex))?.status, "revoked");
  } finally {
    for (const c of opened.reverse()) await c.close().catch(() => {});
    if (s) await s.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("migrate-to-kv --data-dir refuses the flags of a running node's target, and a missing dir", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-migrate-usage-" });
  try {
    await Deno.writeTextFile(`${dir}/unibus.db`, "");
    for (const extra of [["--nats-url", "nats://127.0.0.1:4250"], ["--kv-replicas", "3"]]) {
      const r = await unibus(["migrate-to-kv", "--data-dir", dir, ...extra]);
      assertEquals(r.code, 2, r.stderr);
      assertMatch(
        r.stderr.trim(),
        new RegExp(`^unibus migrate-to-kv: ${extra[0]} does not go with --data-dir`),
      );
    }
    const missing = await unibus(["migrate-to-kv", "--data-dir", `${dir}/nope`]);
    assertEquals(missing.code, 1, missing.stderr);
    assertMatch(
      missing.stderr.trim(),
      /^unibus migrate-to-kv: no database at .*\/nope\/unibus\.db$/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
