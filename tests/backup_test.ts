import { connect as connectClient, type UnibusClient } from "../lib/client/mod.ts";
import { toHex } from "../lib/identity/hex.ts";
import { loadIdentity } from "../lib/identity/identity.ts";
import { type CopySource, type KvStore, openStore } from "../lib/store/mod.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "./helpers/assert.ts";
import { ArchiveError, VerifiedArchive } from "../lib/store/archive.ts";
import { addBusUser, type BusUser } from "./helpers/bus.ts";
import { runUnibus as unibus, type ServeUnderTest, startServe } from "./helpers/serve_process.ts";
import { openServeStore, storeArgs } from "./helpers/serve_store.ts";
import { waitFor } from "./helpers/wait.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Everything a store holds that a backup must carry, in a comparable order. */
async function contents(s: CopySource) {
  const rooms = await s.listRooms();
  const bySign = (a: { signPub: string }, b: { signPub: string }) => a.signPub < b.signPub ? -1 : 1;
  return {
    users: (await s.listUsers()).sort(bySign),
    rooms: await Promise.all(rooms.map(async (r) => ({
      room: r,
      changes: await s.listRoomChanges(r.id),
      members: (await s.listMembers(r.id)).sort(bySign),
      keys: await s.listSealedKeys(r.id),
    }))),
    blobs: await Promise.all(
      (await s.listBlobIds()).sort().map(async (id) => {
        const b = (await s.getBlob(id))!;
        return { ...b, data: dec.decode(b.data) };
      }),
    ),
  };
}

async function client(who: BusUser, node: ServeUnderTest): Promise<UnibusClient> {
  return await connectClient({
    natsServers: [`nats://127.0.0.1:${node.natsPort}`],
    ctrlUrls: [node.httpUrl],
    identity: who.identity,
  });
}

/**
 * Bob hears what Alice sends in `room` on `node`, and reads it in the room's
 * history: the room's keys survived, and its stream was made.
 */
async function exchange(alice: BusUser, bob: BusUser, node: ServeUnderTest, room: string) {
  const ca = await client(alice, node);
  const cb = await client(bob, node);
  try {
    const heard: string[] = [];
    await cb.subscribe(room, (_m, p) => heard.push(dec.decode(p)));
    await ca.publish(room, "after the restore");
    // Stored: the persisted room's stream was made for the restored room.
    await ca.flush();
    await waitFor(() => heard.length > 0, { timeoutMs: 10_000, what: "bob hears alice" });
    assertEquals(heard, ["after the restore"]);
    const { messages } = await cb.history(room);
    assertEquals(messages.map((m) => dec.decode(m.plaintext)).at(-1), "after the restore");
  } finally {
    await ca.close();
    await cb.close();
  }
}

/** Rewrites an archive's lines with `edit` and a recomputed end line (as a forger would). */
async function forge(path: string, out: string, edit: (lines: string[]) => void) {
  const lines = (await Deno.readTextFile(path)).trimEnd().split("\n");
  const end = JSON.parse(lines.pop()!);
  edit(lines);
  const body = lines.map((l) => l + "\n").join("");
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", enc.encode(body)));
  end.sha256 = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  end.records = lines.length - 1;
  await Deno.writeTextFile(out, body + JSON.stringify(end) + "\n");
}

Deno.test("backup and restore: a running SQLite node into a new data dir, into KV and back; damaged or forged archives refused with nothing written", async () => {
  const root = await Deno.makeTempDir({ prefix: "unibus-backup-" });
  const nodes: ServeUnderTest[] = [];
  const dataDir = (name: string) => `${root}/${name}`;
  /** An enforcing serve on data dir `name` (made if absent), and the CLI's flags for its KV. */
  const startNode = async (name: string, kind: "sqlite" | "kv") => {
    await Deno.mkdir(dataDir(name), { recursive: true });
    const idFile = `${dataDir(name)}/internal.id`;
    const node = await startServe({
      dataDir: dataDir(name),
      extraArgs: ["--bus-auth", "enforce", ...storeArgs(kind, idFile)],
    });
    nodes.push(node);
    const kvFlags = [
      "--store",
      "kv",
      "--internal-id-file",
      idFile,
      "--nats-url",
      `nats://127.0.0.1:${node.natsPort}`,
    ];
    return { node, idFile, kvFlags };
  };
  try {
    // 1. A single node on SQLite: users (one revoked), a room whose epoch
    //    moved (a member added and removed), a second room, a blob.
    const { node: a } = await startNode("a", "sqlite");
    const sqlite = await openStore({ kind: "sqlite", path: `${dataDir("a")}/unibus.db` });
    const alice = await addBusUser(sqlite, "alice", "admin");
    const bob = await addBusUser(sqlite, "bob");
    const carol = await addBusUser(sqlite, "carol");
    const dave = await addBusUser(sqlite, "dave");
    await sqlite.revokeUser(dave.hex);
    await sqlite.setUserMaxConnections(bob.hex, 5);
    const ca = await client(alice, a);
    const room = await ca.createRoom("team.ops", { encrypt: true, sign: true, persist: true });
    await ca.addMember(room, bob.hex);
    await ca.addMember(room, carol.hex);
    await ca.removeMember(room, carol.hex);
    await ca.createRoom("team.notes", { encrypt: true, sign: true, persist: false });
    const blob = await ca.putBlob(room, enc.encode("kept in the archive"));
    for (let i = 0; i < 3; i++) await ca.publish(room, `stored-${i}`);
    await ca.flush();
    await ca.close();
    const original = await contents(sqlite);
    await sqlite.close();
    assertEquals(original.rooms.length, 2);
    assertEquals(original.users.find((u) => u.signPub === bob.hex)?.maxConnections, 5);
    assertEquals(original.rooms.find((r) => r.room.subject === "team.ops")?.room.epoch, 3);

    // 2. Backed up while serve runs: one file, 0600, counts on stdout, progress on stderr.
    const archive = `${root}/cp.unibus-backup`;
    const b1 = await unibus(["backup", "--out", archive, "--data-dir", dataDir("a")]);
    assertEquals(b1.code, 0, b1.stderr);
    assertMatch(
      b1.stdout,
      /written to .*cp\.unibus-backup: 4 users, 2 rooms, \d+ sealed keys, 1 blobs/,
    );
    assertMatch(b1.stderr, /^backup: snapshot of .* taken$/m);
    assertMatch(b1.stderr, /^backup: users: 4$/m);
    assertEquals((await Deno.stat(archive)).mode! & 0o777, 0o600);
    assertEquals([...Deno.readDirSync(root)].map((e) => e.name).sort(), ["a", "cp.unibus-backup"]);
    // Never over an existing file.
    const again = await unibus(["backup", "--out", archive, "--data-dir", dataDir("a")]);
    assertEquals(again.code, 1);
    assertMatch(again.stderr.trim(), /^unibus backup: .* exists; backup never overwrites a file$/);
    // No private key of a user or of the node is in it.
    const text = await Deno.readTextFile(archive);
    const internal = await loadIdentity(`${dataDir("a")}/internal.id`);
    for (const who of [alice.identity, bob.identity, carol.identity, dave.identity, internal]) {
      for (const secret of [who.signSeed, who.kexPriv]) {
        for (const spelled of [toHex(secret), btoa(String.fromCharCode(...secret))]) {
          assert(!text.includes(spelled), `a private key of ${who.handle} is in the archive`);
        }
      }
    }
    assert(!/"S[UAN][A-Z2-7]{50,}"/.test(text), "an nkey seed is in the archive");

    // 3. Damaged, truncated, newer or forged archives: one line, exit 1, nothing written.
    const lines = text.trimEnd().split("\n");
    const bad: Array<[string, string, RegExp]> = [
      ["truncated", lines.slice(0, -1).join("\n") + "\n", /truncated \(no end line/],
      ["cut mid-line", text.slice(0, Math.floor(text.length / 2)), /truncated|not JSON/],
      ["a flipped byte", text.replace('"handle":"bob"', '"handle":"bub"'), /checksum mismatch/],
      ["empty", "", /empty file/],
      [
        "a newer format",
        text.replace('"unibus_backup":1', '"unibus_backup":2'),
        /archive format 2 was written by a newer unibus/,
      ],
    ];
    for (const [what, content, why] of bad) {
      const path = `${root}/bad.unibus-backup`;
      await Deno.writeTextFile(path, content);
      const r = await unibus(["restore", "--in", path, "--data-dir", dataDir("x")]);
      assertEquals(r.code, 1, `${what}: ${r.stdout} ${r.stderr}`);
      assertMatch(r.stderr.trim(), why, what);
      assertMatch(r.stderr.trim(), /nothing was written$/, what);
      assertEquals(r.stderr.trim().split("\n").filter((l) => !l.startsWith("restore: ")).length, 1);
      assert(!await Deno.stat(dataDir("x")).catch(() => null), `${what}: the target was created`);
    }
    // A forger who recomputes the digest still cannot add a member the signed log does not name.
    // Changed in place after it was verified (blobs are read from the file again):
    // what is read again is refused, not restored.
    const swapped = `${root}/swapped.unibus-backup`;
    await Deno.copyFile(archive, swapped);
    const verified = await VerifiedArchive.open(swapped);
    const dataAt = text.indexOf('"data":"', text.indexOf('"t":"blob"')) + '"data":"'.length;
    const file = await Deno.open(swapped, { write: true });
    await file.seek(dataAt, Deno.SeekMode.Start);
    await file.write(enc.encode(text[dataAt] === "A" ? "B" : "A"));
    file.close();
    await assertRejects(
      () => verified.getBlob(blob.id),
      ArchiveError,
      "changed after it was verified",
    );
    verified.close();
    const forged = `${root}/forged.unibus-backup`;
    await forge(archive, forged, (ls) => {
      const i = ls.findIndex((l) => l.includes('"subject":"team.ops"'));
      const r = JSON.parse(ls[i]);
      r.members.push({ ...r.members[0], signPub: dave.hex, role: "admin" });
      ls[i] = JSON.stringify(r);
    });
    const f1 = await unibus(["restore", "--in", forged, "--data-dir", dataDir("x")]);
    assertEquals(f1.code, 1, f1.stdout);
    assertMatch(f1.stderr, new RegExp(`member ${dave.hex} \\(admin\\) is not what its signed log`));
    await forge(archive, forged, (ls) => {
      const i = ls.findIndex((l) => l.includes('"subject":"team.ops"'));
      const r = JSON.parse(ls[i]);
      r.changes[1].text = r.changes[1].text.replace(bob.hex, dave.hex);
      r.members = r.members.map((m: { signPub: string }) =>
        m.signPub === bob.hex ? { ...m, signPub: dave.hex } : m
      );
      ls[i] = JSON.stringify(r);
    });
    const f2 = await unibus(["restore", "--in", forged, "--data-dir", dataDir("x")]);
    assertEquals(f2.code, 1, f2.stdout);
    assertMatch(f2.stderr, /membership log does not verify/);
    assert(!await Deno.stat(dataDir("x")).catch(() => null));

    // 4. Restored into a new data dir: everything read back, an audit line, and the
    //    node started on it serves the same room: Bob hears Alice, the blob reads.
    const r1 = await unibus(["restore", "--in", archive, "--data-dir", dataDir("b")]);
    assertEquals(r1.code, 0, r1.stderr);
    assertMatch(r1.stdout, /archive verified: 4 users, 2 rooms \(signed logs verified\)/);
    assertMatch(r1.stdout, /users: 4 restored/);
    assertMatch(r1.stdout, /read back: every restored record matches/);
    const audit = (await Deno.readTextFile(`${dataDir("b")}/audit.log`)).trim().split("\n")
      .map((l) => JSON.parse(l));
    assertEquals(audit.at(-1)?.event, "control_plane.restore");
    assertEquals(audit.at(-1)?.users, 4);
    // Into a store that is not empty: refused, unless --force (then only what is absent).
    const full = await unibus(["restore", "--in", archive, "--data-dir", dataDir("b")]);
    assertEquals(full.code, 1);
    assertMatch(full.stderr.trim(), /is not empty \(\d+ users, rooms and blobs\)/);
    const forced = await unibus([
      "restore",
      "--in",
      archive,
      "--data-dir",
      dataDir("b"),
      "--force",
    ]);
    assertEquals(forced.code, 0, forced.stderr);
    assertMatch(forced.stdout, /users: 0 restored, 4 identical, 0 conflicting/);
    const restored = await openStore({ kind: "sqlite", path: `${dataDir("b")}/unibus.db` });
    assertEquals(await contents(restored), original);
    await restored.close();
    // With history, the node's room streams are read: not while serve runs on them.
    const historyArchive = `${root}/history.unibus-backup`;
    const backupWithHistory = (...target: string[]) =>
      unibus(["backup", "--out", historyArchive, ...target, "--with-history"]);
    const busy = await backupWithHistory("--data-dir", dataDir("a"));
    assertEquals(busy.code, 1, busy.stdout);
    assertMatch(busy.stderr, /in use by another unibus serve/);
    assert(!await Deno.stat(historyArchive).catch(() => null));
    const noDir = await backupWithHistory("--db", `${dataDir("a")}/unibus.db`);
    assertEquals(noDir.code, 2);
    await a.stop();
    const h1 = await backupWithHistory("--data-dir", dataDir("a"));
    assertEquals(h1.code, 0, h1.stderr);
    assertMatch(h1.stdout, /, 3 stored packets of persisted rooms/);
    assertMatch(h1.stderr, /^backup: history of team\.ops: 3 messages$/m);
    // Stored packets are sealed: the plaintext is nowhere in the archive.
    assert(!(await Deno.readTextFile(historyArchive)).includes(btoa("stored-0").slice(0, 8)));
    const { node: b } = await startNode("b", "sqlite");
    await exchange(alice, bob, b, room.id);
    assert(
      b.lines.some((l) => l.msg === "persisted room had no stream; created" && l.room === room.id),
    );
    const cb = await client(bob, b);
    assertEquals(dec.decode(await cb.getBlob(room, blob)), "kept in the archive");
    await cb.close();
    await b.stop();

    // 5. Across stores: the SQLite archive into a KV node, which then serves it;
    //    that node's KV backed up and restored into SQLite gives back the original.
    const { node: c, idFile: cId, kvFlags } = await startNode("c", "kv");
    const r2 = await unibus(["restore", "--in", archive, ...kvFlags]);
    assertEquals(r2.code, 0, r2.stderr);
    assertMatch(r2.stdout, /read back: every restored record matches, in the KV at/);
    const kv = await openServeStore(c, "kv", cId);
    assertEquals(await contents(kv as KvStore), original);
    await kv.close();
    await exchange(alice, bob, c, room.id);
    const kvArchive = `${root}/kv.unibus-backup`;
    const b2 = await unibus(["backup", "--out", kvArchive, ...kvFlags]);
    assertEquals(b2.code, 0, b2.stderr);
    assertMatch(b2.stdout, /backup of the KV at .* written to .*: 4 users, 2 rooms/);
    assertEquals(JSON.parse((await Deno.readTextFile(kvArchive)).split("\n")[0]).source, "kv");
    const r3 = await unibus(["restore", "--in", kvArchive, "--data-dir", dataDir("d")]);
    assertEquals(r3.code, 0, r3.stderr);
    const back = await openStore({ kind: "sqlite", path: `${dataDir("d")}/unibus.db` });
    assertEquals(await contents(back), original);
    await back.close();
    await c.stop();

    // 6. History restored: into a stopped node's data dir (a temporary nats-server makes
    //    the stream), and into a running KV node (its serve makes the stream, restore
    //    waits for it); Bob reads the same packets there. Never into a stream with packets.
    const history = async (node: ServeUnderTest) => {
      const cb = await client(bob, node);
      try {
        return (await cb.history(room)).messages.map((m) => dec.decode(m.plaintext));
      } finally {
        await cb.close();
      }
    };
    const needsDir = await unibus(["restore", "--in", historyArchive, "--db", `${root}/e.db`]);
    assertEquals(needsDir.code, 2);
    assertMatch(needsDir.stderr, /holds 3 stored packets of persisted rooms: give --data-dir/);
    const r4 = await unibus(["restore", "--in", historyArchive, "--data-dir", dataDir("e")]);
    assertEquals(r4.code, 0, r4.stderr);
    assertMatch(r4.stdout, /history: 3 stored packets restored into 1 rooms/);
    const { node: e } = await startNode("e", "sqlite");
    assertEquals(await history(e), ["stored-0", "stored-1", "stored-2"]);
    await e.stop();
    const { node: g, kvFlags: gFlags } = await startNode("g", "kv");
    const r5 = await unibus(["restore", "--in", historyArchive, ...gFlags]);
    assertEquals(r5.code, 0, r5.stderr);
    assertMatch(r5.stdout, /history: 3 stored packets restored into 1 rooms/);
    assertEquals(await history(g), ["stored-0", "stored-1", "stored-2"]);
    // Read back out of KV with its history, the archive carries the same packets.
    const kvHistory = `${root}/kv-history.unibus-backup`;
    const b3 = await unibus(["backup", "--out", kvHistory, ...gFlags, "--with-history"]);
    assertEquals(b3.code, 0, b3.stderr);
    assertMatch(b3.stdout, /, 3 stored packets of persisted rooms/);
    const again2 = await unibus(["restore", "--in", historyArchive, ...gFlags, "--force"]);
    assertEquals(again2.code, 1, again2.stdout);
    assertMatch(again2.stdout, /conflict: room .* stream already holds 3 messages/);
    await g.stop();
  } finally {
    for (const n of nodes) await n.stop();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});
