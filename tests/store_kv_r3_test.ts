/**
 * The store contract, unchanged, at R3: every case on the same three-node
 * nats-server cluster (started once for this file: 50 clusters would cost
 * CI minutes), with R3 buckets. A case gets a fresh store by purging every
 * control-plane stream before it opens, which is what the contract needs
 * (no state shared between `open()` calls of different cases).
 */

import { jetstreamManager } from "@nats-io/jetstream";
import { createLogger } from "../lib/log.ts";
import { controlPlaneStreams } from "../lib/store/kv_names.ts";
import { openKvStore } from "../lib/store/kv.ts";
import { assertEquals } from "./helpers/assert.ts";
import { startNatsCluster, untilFullMetaGroup, waitUntil } from "./helpers/nats_cluster.ts";
import { storeContract } from "./store_contract.ts";

// R3 needs all three nodes in the meta group; a node left out of a short
// one is restarted, as serve's watchdog does (untilFullMetaGroup).
async function startR3Cluster() {
  const c = await startNatsCluster(3);
  try {
    await untilFullMetaGroup(c, 60_000);
    return c;
  } catch (err) {
    await c.stop();
    throw err;
  }
}
const cluster = await startR3Cluster();
// If a filter leaves out the last test, or the run is interrupted, the
// nats-servers still go.
globalThis.addEventListener("unload", () => {
  for (const n of cluster.nodes) {
    const pid = n.server.pid;
    if (pid !== null) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
  }
});

// JetStream answers once the meta group has a leader (seconds after start).
{
  const admin = await cluster.connectAs(0, "internal");
  try {
    await waitUntil("JetStream on the fresh cluster", 60_000, async () => {
      const jsm = await jetstreamManager(admin, { checkAPI: false, timeout: 2000 });
      await jsm.getAccountInfo();
      return true;
    });
  } finally {
    await admin.close();
  }
}

let node = 0;

storeContract("kv R3", async () => {
  const opened: Array<{ close(): Promise<void> }> = [];
  // Each case on another node, so all three serve as the entry point.
  const i = node++ % 3;
  const admin = await cluster.connectAs(i, "internal");
  try {
    const jsm = await jetstreamManager(admin, { checkAPI: false });
    const existing = new Set<string>();
    for await (const name of jsm.streams.names()) existing.add(name);
    for (const s of controlPlaneStreams()) if (existing.has(s)) await jsm.streams.purge(s);
  } finally {
    await admin.close();
  }
  const open = async () => {
    const nc = await cluster.connectAs(i, "internal");
    const store = await openKvStore({
      nc,
      replicas: 3,
      ownsConnection: true,
      bootstrapTimeoutMs: 60_000,
    });
    opened.push(store);
    return store;
  };
  const store = await open();
  return {
    store,
    another: open,
    cleanup: async () => {
      for (const s of opened) await s.close();
    },
  };
});

Deno.test("buckets made at R1 are raised in place to R3 by a store opened with replicas 3, and it says so", async () => {
  const admin = await cluster.connectAs(1, "internal");
  try {
    const jsm = await jetstreamManager(admin, { checkAPI: false });
    const existing = new Set<string>();
    for await (const name of jsm.streams.names()) existing.add(name);
    for (const s of controlPlaneStreams()) if (existing.has(s)) await jsm.streams.delete(s);
    // A single node's store: R1 buckets, one user.
    const r1 = await openKvStore({
      nc: await cluster.connectAs(1, "internal"),
      replicas: 1,
      ownsConnection: true,
    });
    await r1.addUser({
      signPub: "ab".repeat(32),
      kexPub: null,
      kexSig: null,
      handle: "ada",
      role: "admin",
    });
    await r1.close();
    assertEquals((await jsm.streams.info("KV_UNIBUS_users")).config.num_replicas, 1);
    // The same data opened at R3 (as serve --kv-replicas 3 does): raised, logged, nothing lost.
    const lines: Array<Record<string, unknown>> = [];
    const log = createLogger("test", { sink: (l) => void lines.push(JSON.parse(l)) });
    const r3 = await openKvStore({
      nc: await cluster.connectAs(2, "internal"),
      replicas: 3,
      ownsConnection: true,
      bootstrapTimeoutMs: 60_000,
      log,
    });
    try {
      assertEquals((await r3.getUser("ab".repeat(32)))?.handle, "ada");
    } finally {
      await r3.close();
    }
    for (const s of controlPlaneStreams()) {
      const cfg = (await jsm.streams.info(s)).config;
      assertEquals([s, cfg.num_replicas, cfg.allow_direct], [s, 3, true]);
    }
    const raised = lines.filter((l) => l.msg === "control-plane stream raised in place");
    assertEquals(raised.length, controlPlaneStreams().length, JSON.stringify(lines));
    assertEquals(raised.every((l) => l.replicasBefore === 1 && l.replicas === 3), true);
  } finally {
    await admin.close();
  }
});

Deno.test("getUserAccess at R3 sees a revoke or a removal made through another node at once, and its log check stores nothing", async () => {
  const stores = await Promise.all([0, 1, 2].map(async (i) =>
    await openKvStore({
      nc: await cluster.connectAs(i, "internal"),
      replicas: 3,
      ownsConnection: true,
      bootstrapTimeoutMs: 60_000,
    })
  ));
  const admin = await cluster.connectAs(0, "internal");
  try {
    const jsm = await jetstreamManager(admin, { checkAPI: false });
    const state = async () =>
      await Promise.all(
        ["KV_UNIBUS_users", "KV_UNIBUS_rooms", "KV_UNIBUS_members"].map(async (s) => {
          const st = (await jsm.streams.info(s)).state;
          return [s, st.messages, st.last_seq];
        }),
      );
    // Each round writes through one node and reads through the other two at
    // once (each read is a direct get of the nearest replica, checked against
    // the log). A stale leader is what the check is for; tests/
    // cluster_faults_test.ts makes one (SIGSTOP) and checks logins there.
    const users: string[] = [];
    for (let round = 0; round < 6; round++) {
      const [writer, ...readers] = [0, 1, 2].map((k) => stores[(round + k) % 3]);
      const signPub = crypto.randomUUID().replaceAll("-", "").repeat(2);
      users.push(signPub);
      const roomId = `r${round}-${crypto.randomUUID().slice(0, 8)}`;
      await writer.addUser({ signPub, kexPub: null, kexSig: null, handle: "ada", role: "member" });
      await writer.createRoom({
        id: roomId,
        subject: `chat.${roomId}`,
        policy: { encrypt: true, sign: true, persist: false },
        createdBy: signPub,
      });
      await writer.addMember({ roomId, signPub, role: "member", addedBy: signPub, change: null });
      for (const r of readers) {
        const access = await r.getUserAccess(signPub);
        assertEquals([access.user?.status, access.rooms.map((x) => x.id)], ["active", [roomId]]);
      }
      // The room taken away (a member removal or the room deleted), then a
      // revoke: each seen at once elsewhere.
      if (round % 2 === 0) await writer.removeMember(roomId, signPub);
      else await writer.deleteRoom(roomId);
      const afterRemoval = await Promise.all(readers.map((r) => r.getUserAccess(signPub)));
      assertEquals(afterRemoval.map((a) => a.rooms.length), [0, 0], `round ${round}`);
      await writer.revokeUser(signPub);
      const checked = await Promise.all(readers.map((r) => r.getUserAccess(signPub)));
      assertEquals(checked.map((a) => a.user?.status), ["revoked", "revoked"], `round ${round}`);
    }
    // The checks change no stream: same messages, same last sequence, for
    // keys that exist and keys that do not.
    const before = await state();
    const absent = crypto.randomUUID().replaceAll("-", "").repeat(2);
    for (let i = 0; i < 20; i++) {
      for (const s of stores) {
        assertEquals((await s.getUserAccess(absent)).user, null);
        assertEquals((await s.getUserAccess(users[i % users.length])).user?.status, "revoked");
      }
    }
    assertEquals(await state(), before);
  } finally {
    await admin.close();
    for (const s of stores) await s.close();
  }
});

Deno.test({
  name: "store contract (kv R3): the shared cluster stops",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => cluster.stop(),
});
