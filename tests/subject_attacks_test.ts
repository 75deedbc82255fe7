/**
 * Regression tests for the outside attack of issue 8 (findings 1 and 2) and
 * for isolation: nothing one user stores may cost another user their login.
 * Real serve, real nats-server, real SQLite, raw HTTP and raw NATS.
 */

import { createClient } from "@libsql/client";
import { inboxPrefixFor } from "../lib/auth/acl.ts";
import { openSqliteStore } from "../lib/store/sqlite.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { addBusUser, addRoom, connectAs, subscribeDenied } from "./helpers/bus.ts";
import {
  as,
  type Bus,
  genesis,
  nextChange,
  startBus,
  stopBus,
  within,
} from "./helpers/rooms_api.ts";
import { startServe } from "./helpers/serve_process.ts";
import type { RoomView } from "../server/rooms/state.ts";

Deno.test("finding 1: a subject with a NUL byte is 400 invalid_subject and takes over nothing", async () => {
  const bus = await startBus();
  try {
    const alice = await addBusUser(bus.store, "alice");
    const mallory = await addBusUser(bus.store, "mallory");
    const made = await as(bus, alice.identity).post<RoomView>("/v1/rooms", {
      change: genesis(alice.identity, { subject: "chat.ops" }),
    });
    assertEquals(made.status, 201);

    // The store used to keep the part before the NUL: "chat.ops" (Alice's
    // subject, now in Mallory's ACL) or "" (a member locked out of NATS).
    for (const subject of ["chat.ops\u0000x", "\u0000x", "\u0000"]) {
      const change = genesis(mallory.identity, { subject });
      const id = /^room: (.*)$/m.exec(change.text)![1];
      const res = await as(bus, mallory.identity).post("/v1/rooms", { change });
      assertEquals(
        [res.status, res.body.error, res.body.rule],
        [400, "invalid_subject", "control_character"],
        JSON.stringify(subject),
      );
      assertEquals(await bus.store.getRoom(id), null, "nothing is stored");
    }
    assertEquals(await bus.store.listRoomsForMember(mallory.hex), []);
    assertEquals((await as(bus, mallory.identity).get("/v1/rooms")).body, { rooms: [] });

    // And on the data plane Mallory holds nothing of Alice's room.
    const nc = await connectAs(bus.s.natsPort, mallory);
    try {
      await subscribeDenied(nc, "chat.ops");
    } finally {
      await nc.close();
    }
  } finally {
    await stopBus(bus);
  }
});

Deno.test("finding 2: a subject above U+00FF is 400 and the member it would lock out logs in", async () => {
  const bus: Bus = await startBus();
  try {
    const mallory = await addBusUser(bus.store, "mallory");
    const victim = await addBusUser(bus.store, "victim");
    for (const subject of ["lock.\u2603", "lock.\u{1f600}", "lock.\u00e9"]) {
      const res = await as(bus, mallory.identity).post<RoomView & { error: string }>(
        "/v1/rooms",
        { change: genesis(mallory.identity, { subject }) },
      );
      if (res.status === 201) {
        // Today's main accepted it; what followed was the lockout: adding
        // the victim (no consent needed) broke every login of theirs.
        await as(bus, mallory.identity).post(`/v1/rooms/${res.body.id}/changes`, {
          change: nextChange(res.body, mallory.identity, "add", victim.identity),
        });
      }
      assertEquals(
        [res.status, res.body.error, (res.body as { rule?: string }).rule],
        [400, "invalid_subject", "not_ascii"],
        JSON.stringify(subject),
      );
    }
    assertEquals(await bus.store.listRoomsForMember(victim.hex), []);
    const nc = await connectAs(bus.s.natsPort, victim);
    await nc.close();
  } finally {
    await stopBus(bus);
  }
});

Deno.test("rooms stored with inexpressible subjects are reported at start, grant nothing, and lock nobody out", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "unibus-isolation-" });
  const dbPath = `${dataDir}/unibus.db`;
  try {
    // The data an earlier version could leave behind, written before serve starts.
    const store = await openSqliteStore(dbPath);
    // A handle above U+00FF also broke the user JWT once.
    const bob = await addBusUser(store, "bob \u2603");
    const alice = await addBusUser(store, "alice");
    await addRoom(store, "good", "team.good", [alice, bob]);
    await store.close();
    const bad: Record<string, string> = {
      empty: "",
      snowman: "snow.\u2603",
      wildcard: "team.>",
      inbox: `_INBOX.${alice.hex}.replies`,
      spaced: "a b",
    };
    // Straight into the SQLite file, past the store's checks.
    const db = createClient({ url: `file:${dbPath}` });
    try {
      for (const [id, subject] of Object.entries(bad)) {
        await db.execute({
          sql: `INSERT INTO rooms (id, subject, encrypt, sign, persist, created_by, created_at)
                VALUES (?, ?, 1, 1, 0, ?, 1)`,
          args: [id, subject, alice.hex],
        });
        for (const who of [alice, bob]) {
          await db.execute({
            sql: `INSERT INTO members (room_id, sign_pub, role, added_by, added_at)
                  VALUES (?, ?, 'member', ?, 1)`,
            args: [id, who.hex, alice.hex],
          });
        }
      }
    } finally {
      db.close();
    }

    const s = await startServe({ dataDir, extraArgs: ["--bus-auth", "enforce"] });
    try {
      // serve says so at start: one line per room, with the broken rule.
      const reported = s.lines.filter((l) =>
        l.msg === "room grants nothing: its stored subject breaks the subject grammar"
      );
      assertEquals(
        Object.fromEntries(reported.map((l) => [l.room, l.rule])),
        {
          empty: "empty",
          snowman: "not_ascii",
          wildcard: "wildcard",
          inbox: "reserved_prefix",
          spaced: "whitespace",
        },
      );
      assertEquals(s.lines.find((l) => l.msg === "rooms with inexpressible subjects")?.count, 5);

      // A real login over NATS succeeds, with the good room's permissions.
      const nb = await connectAs(s.natsPort, bob);
      const na = await connectAs(s.natsPort, alice);
      try {
        const left = new Set<unknown>();
        await s.waitFor((l) => {
          if (
            l.msg === "room left out of the ACL: its subject is inexpressible" &&
            l.signPub === bob.hex
          ) {
            left.add(l.room);
          }
          return left.size === 5;
        });
        const admitted = await s.waitFor((l) =>
          l.msg === "connection admitted" && l.signPub === bob.hex
        );
        assertEquals([admitted.rooms, admitted.roomsLeftOut], [1, 5]);
        const sub = nb.subscribe("team.good", { max: 1 });
        await nb.flush();
        na.publish("team.good", "hello");
        const got = await within(
          3000,
          (async () => {
            for await (const m of sub) return m.string();
          })(),
        );
        assertEquals(got, "hello");

        // The bad rooms grant nothing: not the wildcard, not Alice's inbox.
        await subscribeDenied(nb, "team.other");
        await subscribeDenied(nb, `${inboxPrefixFor(alice.hex)}.replies`);

        // The enforcer's re-checks see the same ACL: the login is not cut.
        assertEquals(await within(1000, nb.closed().then(() => "closed")), null);
        assert(!nb.isClosed(), "bob's connection was cut");
      } finally {
        await nb.close().catch(() => {});
        await na.close().catch(() => {});
      }

      // The control plane keeps answering for that user (no 500).
      const reader = await openSqliteStore(dbPath);
      try {
        const res = await as({ s, store: reader }, bob.identity).get("/v1/rooms");
        assertEquals(res.status, 200);
      } finally {
        await reader.close();
      }
    } finally {
      assertEquals((await s.stop()).code, 0);
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("isolation: however many rooms others add a user to, the user logs in and keeps its own", async () => {
  // Found by probing: membership needs no consent and every room puts its
  // subject into the member's JWT, so about ten users at their room quota
  // (here written straight into the store) made the callout's answer exceed
  // nats-server's max_payload, and every login of the victim was refused.
  const bus = await startBus();
  try {
    const victim = await addBusUser(bus.store, "victim");
    const mallory = await addBusUser(bus.store, "mallory");
    const mine = await as(bus, victim.identity).post<RoomView>("/v1/rooms", {
      change: genesis(victim.identity, { subject: "victim.own" }),
    });
    assertEquals(mine.status, 201);
    for (let i = 0; i < 1200; i++) {
      const id = `0${String(i).padStart(31, "0")}`;
      await bus.store.createRoom({
        id,
        subject: `junk.${i}.`.padEnd(255, "a"),
        policy: { encrypt: true, sign: true, persist: i % 2 === 0 },
        createdBy: mallory.hex,
      });
      await bus.store.addMember({
        roomId: id,
        signPub: victim.hex,
        role: "member",
        addedBy: mallory.hex,
        change: null,
      });
    }
    const nv = await connectAs(bus.s.natsPort, victim);
    const nm = await connectAs(bus.s.natsPort, mallory);
    try {
      const admitted = await bus.s.waitFor((l) =>
        l.msg === "connection admitted" && l.signPub === victim.hex
      );
      assert((admitted.roomsLeftOut as number) > 0, "some junk rooms are left out");
      assertEquals((admitted.rooms as number) + (admitted.roomsLeftOut as number), 1201);
      await bus.s.waitFor((l) =>
        l.msg === "room left out of the ACL: the ACL is full" && l.signPub === victim.hex
      );
      // The victim's own room works: Mallory is not in it, so the victim
      // publishes and hears itself.
      const sub = nv.subscribe("victim.own", { max: 1 });
      await nv.flush();
      nv.publish("victim.own", "mine");
      const got = await within(
        3000,
        (async () => {
          for await (const m of sub) return m.string();
        })(),
      );
      assertEquals(got, "mine");
      // The enforcer derives the same ACL: the login is not cut.
      assertEquals(await within(1000, nv.closed().then(() => "closed")), null);
    } finally {
      await nv.close().catch(() => {});
      await nm.close().catch(() => {});
    }
  } finally {
    await stopBus(bus);
  }
});
