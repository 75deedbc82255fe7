/**
 * The audit trail: each security event, done for real against a serve in
 * enforce mode, has its one line in the data dir's audit log (and on stdout
 * marked `"audit": true`); no line holds a secret or a message's content;
 * `unibus audit tail` reads them back.
 */

import { connect, type UnibusClient } from "../lib/client/client.ts";
import { generateIdentity, type Identity } from "../lib/identity/identity.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { connectAs, strangerUser } from "./helpers/bus.ts";
import { waitUntil } from "./helpers/nats_cluster.ts";
import { runUnibus, startServe, userAddArgs } from "./helpers/serve_process.ts";
import { toBase64 } from "../lib/e2e/bytes.ts";

type Event = Record<string, unknown>;

Deno.test("every security event has its audit line, and audit tail reads them back", async () => {
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce", "--max-rooms-per-user", "2"] });
  const clients: UnibusClient[] = [];
  try {
    const db = `${s.dataDir}/unibus.db`;
    const log = `${s.dataDir}/audit.log`;
    const add = async (id: Identity) => {
      const r = await runUnibus([...userAddArgs(id), "--db", db]);
      assertEquals(r.code, 0, r.stderr);
    };
    const [ada, bob, cid] = ["ada", "bob", "cid"].map((h) => generateIdentity(h));
    for (const id of [ada, bob, cid]) await add(id);
    const open = async (id: Identity) => {
      const c = await connect({
        natsServers: [`nats://127.0.0.1:${s.natsPort}`],
        ctrlUrls: [s.httpUrl],
        identity: id,
      });
      clients.push(c);
      return c;
    };
    const [a, b, c] = [await open(ada), await open(bob), await open(cid)];

    // A stranger's login is denied.
    await connectAs(s.natsPort, strangerUser()).then(
      async (nc) => {
        await nc.close();
        throw new Error("a stranger was admitted");
      },
      () => {},
    );
    // Rooms: created, members added, one leaves, one removed (and cut).
    const room = await a.createRoom("audit.team", undefined, { members: [bob.signPubHex] });
    await a.addMember(room, cid.signPubHex);
    await b.refreshSession();
    await c.refreshSession();
    await a.publish(room, "the secret plan");
    await a.flush();
    await c.leave(room);
    await a.removeMember(room, bob.signPubHex);
    // The quota: a second room is fine, a third refused.
    const second = await a.createRoom("audit.second");
    let refused = false;
    await a.createRoom("audit.third").catch(() => refused = true);
    assert(refused, "the third room was not refused");
    await a.deleteRoom(second);
    // A request with a bad signature.
    const bad = await fetch(`${s.httpUrl}/v1/rooms`, {
      headers: {
        "x-unibus-key": ada.signPubHex,
        "x-unibus-timestamp": String(Date.now()),
        "x-unibus-nonce": "abcdefghijklmnop",
        "x-unibus-signature": toBase64(new Uint8Array(64)),
      },
    });
    await bad.body?.cancel();
    assertEquals(bad.status, 401);
    // A revoke, which cuts the user's connection.
    const revoked = await runUnibus(["user", "revoke", cid.signPubHex, "--db", db]);
    assertEquals(revoked.code, 0, revoked.stderr);

    const read = async (): Promise<Event[]> =>
      (await Deno.readTextFile(log)).trim().split("\n").map((l) => JSON.parse(l));
    const has = (events: Event[], event: string, pred: (e: Event) => boolean = () => true) =>
      events.some((e) => e.audit === true && e.event === event && pred(e));
    const events = await waitUntil("the cuts in the audit log", 15_000, async () => {
      const e = await read();
      const cut = (who: Identity, reason: string) =>
        has(e, "connection.cut", (x) => x.signPub === who.signPubHex && x.reason === reason);
      return cut(bob, "membership narrowed") && cut(cid, "user revoked") ? e : null;
    });
    const expected: Array<[string, (e: Event) => boolean]> = [
      [
        "user.add",
        (e) => e.signPub === ada.signPubHex && e.by === "cli" && typeof e.host === "string",
      ],
      ["login.admitted", (e) => e.signPub === ada.signPubHex],
      ["login.denied", (e) => typeof e.reason === "string"],
      ["room.create", (e) => e.room === room.id && e.by === ada.signPubHex],
      ["room.add", (e) => e.room === room.id && e.member === cid.signPubHex && e.seq === 1],
      ["room.leave", (e) => e.room === room.id && e.by === cid.signPubHex],
      ["room.remove", (e) => e.member === bob.signPubHex && e.by === ada.signPubHex],
      ["quota.refused", (e) => e.key === ada.signPubHex],
      ["room.delete", (e) => e.room === second.id],
      [
        "request.denied",
        (e) => e.path === "/v1/rooms" && e.claimedKey === ada.signPubHex && e.from === "127.0.0.1",
      ],
      ["user.revoke", (e) => e.signPub === cid.signPubHex],
    ];
    for (const [event, pred] of expected) {
      assert(
        has(events, event, pred),
        `no ${event} line: ${JSON.stringify(events.map((e) => e.event))}`,
      );
    }
    // The same lines on stdout, marked for journald.
    assert(s.lines.some((l) => l.audit === true && l.event === "room.create"));
    // Never a secret, never a message's content.
    const text = await Deno.readTextFile(log);
    for (const secret of [ada.signSeed, ada.kexPriv, cid.signSeed]) {
      assert(!text.includes(toBase64(secret)), "a private key in the audit log");
      assert(!text.includes([...secret].map((x) => x.toString(16).padStart(2, "0")).join("")));
    }
    assert(!text.includes("the secret plan"), "message content in the audit log");
    assertEquals((await Deno.stat(log)).mode! & 0o777, 0o600);

    // audit tail: the same events, filtered, as text or JSON.
    const json = await runUnibus([
      "audit",
      "tail",
      "--data-dir",
      s.dataDir,
      "--lines",
      "1000",
      "--json",
    ]);
    assertEquals(json.code, 0, json.stderr);
    const tailed = json.stdout.trim().split("\n").map((l) => JSON.parse(l));
    // Events may have been appended since: the tail is the log as it was then.
    assert(tailed.length >= events.length);
    assertEquals(tailed, (await read()).slice(0, tailed.length));
    const rooms = await runUnibus([
      "audit",
      "tail",
      "--data-dir",
      s.dataDir,
      "--event",
      "room.",
      "--lines",
      "3",
    ]);
    const lines = rooms.stdout.trim().split("\n");
    assertEquals(lines.length, 3);
    for (const l of lines) assertMatch(l, /^\d{4}-\d\d-\d\dT\S+ {2}room\.\w+ {2}/);
    const none = await runUnibus(["audit", "tail", "--audit-log", `${s.dataDir}/nope.log`]);
    assertEquals([none.code, none.stderr.trim()], [
      1,
      `unibus audit: no audit log at ${s.dataDir}/nope.log`,
    ]);
  } finally {
    for (const c of clients) await c.close().catch(() => {});
    await s.stop();
  }
});
