/**
 * Faults a real cluster sees, on ONE three-node `unibus serve` cluster
 * (loopback, mutual route TLS, `--store kv --kv-replicas 3`) shared by the
 * steps, one step per fault, each ending with the same invariants and one
 * summary line:
 *
 * - no login of a revoked user is admitted after its revoke returned, on
 *   any node (the login attempts' own results, and serve's "connection
 *   admitted" lines);
 * - every acknowledged user change is present on every node (each replica
 *   of the users' stream, read by direct gets once all report current).
 *
 * pause: SIGSTOP of one nats-server for 10 s (the JetStream meta leader's,
 * then the one leading `KV_UNIBUS_users`), while revokes go through another
 * node and logins are tried every 100 ms on all three nodes; then SIGCONT.
 * A paused leader is the worst case for reads: the others elect a new one
 * and commit the revoke without it, and on SIGCONT it still believes it
 * leads until it hears of the newer term.
 *
 * Every loop is bounded in count and time, a paused process is always
 * continued, and every process is stopped on success and failure alike.
 */

import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { inboxPrefixFor } from "../lib/auth/acl.ts";
import {
  busUserAuthenticator,
  NativeNkeyPair,
  nkeyAuthenticatorFor,
  Prefix,
} from "../lib/auth/nkey.ts";
import { generateIdentity, loadIdentity } from "../lib/identity/identity.ts";
import { openKvStore } from "../lib/store/kv.ts";
import { type Store, StoreUnavailableError, type User } from "../lib/store/store.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { type BusUser, busUserOf } from "./helpers/bus.ts";
import { type ServeCluster, startServeCluster } from "./helpers/cluster.ts";
import { waitUntil } from "./helpers/nats_cluster.ts";
import { isAlive } from "./helpers/ports.ts";

/** How long a node's nats-server stays stopped. */
const PAUSE_MS = 10_000;
/** Logins go on this long after SIGCONT: the deposed leader's window. */
const AFTER_PAUSE_MS = 4000;
/** One login attempt's deadline. */
const LOGIN_TIMEOUT_MS = 1500;
/** Attempts in flight per node at most (a paused node's pile up). */
const MAX_IN_FLIGHT = 40;
/** When, after SIGSTOP, each revoke is started. */
const REVOKE_AT_MS = [500, 3500, 6500];

interface Attempt {
  node: number;
  user: string;
  start: number;
  end: number;
  result: "admitted" | "refused" | "failed";
  error?: string;
}

/** A connection as a node's internal identity, and the store opened on it (as the CLI does). */
interface NodeAccess {
  nc: NatsConnection;
  store: Store;
}

async function nodeAccess(c: ServeCluster, i: number): Promise<NodeAccess> {
  const id = await loadIdentity(c.nodes[i].internalIdFile);
  const nc = await connect({
    servers: c.nodes[i].natsUrl,
    authenticator: nkeyAuthenticatorFor(new NativeNkeyPair(Prefix.User, id.signSeed)),
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 200,
    timeout: 3000,
  });
  try {
    const store = await openKvStore({ nc, replicas: 3, bootstrapTimeoutMs: 30_000 });
    return { nc, store };
  } catch (err) {
    await nc.close();
    throw err;
  }
}

/** Direct gets per key when reading what every replica holds. */
const READS_PER_KEY = 24;

/**
 * Each key's status as every replica of the users' stream holds it: the
 * distinct answers of {@linkcode READS_PER_KEY} direct gets per key, made
 * through node `a`. nats-server 2.10 hands a direct get to a replica picked
 * at random (its queue group spans the cluster), so a replica that lacked a
 * change would answer about a third of them: the chance that it answers
 * none is (2/3)^24, under 1 in 10,000.
 */
async function usersOnReplicas(a: NodeAccess, keys: string[]): Promise<string[][]> {
  const kv = await new Kvm(jetstream(a.nc, { timeout: 2000 })).open("UNIBUS_users", {
    allow_direct: true,
  });
  return await Promise.all(keys.map(async (k) => {
    const seen = new Set<string>();
    for (let n = 0; n < READS_PER_KEY; n++) {
      const e = await kv.get(k).catch(() => undefined);
      seen.add(
        e === undefined ? "unanswered" : e?.operation === "PUT" ? e.json<User>().status : "absent",
      );
    }
    return [...seen].sort();
  }));
}

/**
 * Waits until all three nodes are healthy with every control-plane replica
 * current and agree on the meta leader; that leader's name.
 */
async function settled(c: ServeCluster, ms: number): Promise<string> {
  return await waitUntil("all three nodes healthy, replicas current", ms, async () => {
    const hs = await Promise.all([0, 1, 2].map((i) => c.health(i).catch(() => null)));
    const cls = hs.map((h) =>
      h?.status === 200
        ? h.body.cluster as { replicasCurrent: boolean; metaLeader: string | null }
        : null
    );
    const meta = cls[0]?.metaLeader ?? null;
    return cls.every((cl) => cl?.replicasCurrent === true && cl.metaLeader === meta) && meta;
  });
}

/** The users' stream leader, asked of the stream itself (not a status seconds old). */
async function usersLeader(a: NodeAccess): Promise<string | null> {
  const res = await a.nc.request("$JS.API.STREAM.INFO.KV_UNIBUS_users", "", { timeout: 5000 });
  return res.json<{ cluster?: { leader?: string } }>().cluster?.leader ?? null;
}

/** One login as `user` on node `i`: admitted, refused by the callout, or failed otherwise. */
async function login(c: ServeCluster, i: number, user: BusUser): Promise<Attempt> {
  const start = Date.now();
  try {
    const nc = await connect({
      servers: c.nodes[i].natsUrl,
      authenticator: busUserAuthenticator(user.kp),
      inboxPrefix: inboxPrefixFor(user.hex),
      reconnect: false,
      maxReconnectAttempts: 0,
      timeout: LOGIN_TIMEOUT_MS,
    });
    const end = Date.now();
    await nc.close().catch(() => {});
    return { node: i, user: user.hex, start, end, result: "admitted" };
  } catch (err) {
    const msg = (err as Error).message ?? String(err);
    return {
      node: i,
      user: user.hex,
      start,
      end: Date.now(),
      result: /authorization/i.test(msg) ? "refused" : "failed",
      error: msg.slice(0, 80),
    };
  }
}

/**
 * Every `intervalMs`, one login of each user on each node, until `stop`
 * resolves (and at most `maxRounds` rounds); resolves with every attempt
 * once the last one has ended.
 */
async function loginLoop(
  c: ServeCluster,
  users: BusUser[],
  stop: Promise<void>,
  maxRounds: number,
): Promise<Attempt[]> {
  const attempts: Promise<Attempt>[] = [];
  const inFlight = [0, 0, 0];
  let stopped = false;
  stop.then(() => stopped = true);
  for (let round = 0; round < maxRounds && !stopped; round++) {
    for (let i = 0; i < 3; i++) {
      for (const u of users) {
        if (inFlight[i] >= MAX_IN_FLIGHT) continue;
        inFlight[i]++;
        attempts.push(login(c, i, u).finally(() => inFlight[i]--));
      }
    }
    await Promise.race([stop, new Promise((r) => setTimeout(r, 100))]);
  }
  return await Promise.all(attempts);
}

/** The serve lines "connection admitted" of every node, with their time. */
function admissionLines(
  c: ServeCluster,
): Array<{ node: string; signPub: string; at: number; line: Record<string, unknown> }> {
  return c.nodes.flatMap((n) =>
    n.history.flatMap((p) =>
      p.lines
        .filter((l) => l.msg === "connection admitted" && typeof l.signPub === "string")
        .map((l) => ({
          node: n.name,
          signPub: l.signPub as string,
          at: Date.parse(String(l.ts)),
          line: l,
        }))
    )
  );
}

/** Pauses `pid` (SIGSTOP) for `ms`; always continues it, whatever happens meanwhile. */
async function pauseFor(pid: number, ms: number, during: () => Promise<void>): Promise<void> {
  Deno.kill(pid, "SIGSTOP");
  try {
    await Promise.all([during(), new Promise((r) => setTimeout(r, ms))]);
  } finally {
    if (isAlive(pid)) Deno.kill(pid, "SIGCONT");
  }
}

/**
 * Revokes `u` through `store`, again on a store error (a write waits for the
 * bucket's leader; during an election it fails) until `deadline`; the time
 * it returned, or null if it never did.
 */
async function revokeBy(store: Store, u: BusUser, deadline: number): Promise<number | null> {
  for (let n = 0; Date.now() < deadline && n < 200; n++) {
    try {
      await store.revokeUser(u.hex);
      return Date.now();
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return null;
}

/** One pause fault: its victim, the revokes, the logins, the invariants, one summary line. */
async function pauseFault(c: ServeCluster, what: "meta leader" | "users' leader"): Promise<void> {
  const began = Date.now();
  const meta = await settled(c, 45_000);
  const probe = await nodeAccess(c, c.nodes.findIndex((n) => n.name !== meta));
  let victimName: string | null;
  try {
    victimName = what === "meta leader" ? meta : await usersLeader(probe);
    // Pause a node that leads the users' stream and not the meta group, so
    // that this is not the other fault again: ask the stream's leader to
    // step down (three times at most; RAFT picks the next one).
    for (let n = 0; n < 3 && what === "users' leader" && victimName === meta; n++) {
      await probe.nc.request("$JS.API.STREAM.LEADER.STEPDOWN.KV_UNIBUS_users", "", {
        timeout: 5000,
      }).catch(() => {});
      victimName = await waitUntil(
        "a new leader of the users' stream",
        20_000,
        () => usersLeader(probe),
      );
      await settled(c, 20_000);
    }
  } finally {
    await probe.store.close();
    await probe.nc.close();
  }
  const victim = c.nodes.findIndex((n) => n.name === victimName);
  assert(victim >= 0, `no ${what} to pause (meta leader ${meta})`);
  const others = [0, 1, 2].filter((i) => i !== victim);
  const natsPid = c.pids(victim).nats;
  assert(natsPid !== null, `${victimName}'s nats-server pid is unknown`);

  // The users: three to revoke during the pause and one that stays.
  const admins = await Promise.all(others.map((i) => nodeAccess(c, i)));
  try {
    const revokees = [0, 1, 2].map((k) => busUserOf(generateIdentity(`revokee${k}`)));
    const keeper = busUserOf(generateIdentity("keeper"));
    for (const u of [...revokees, keeper]) {
      await admins[0].store.addUser({
        signPub: u.hex,
        kexPub: null,
        kexSig: null,
        handle: u.identity.handle!,
        role: "member",
      });
    }

    const stopLogins = Promise.withResolvers<void>();
    const maxRounds = Math.ceil((1000 + PAUSE_MS + AFTER_PAUSE_MS + 30_000) / 100);
    const logins = loginLoop(c, [...revokees, keeper], stopLogins.promise, maxRounds);
    const revokedAt = new Map<string, number | null>();
    let pausedAt = 0;
    let continuedAt = 0;
    let usersLedBy: string | null = null;
    try {
      await new Promise((r) => setTimeout(r, 1000)); // logins under way before the fault
      usersLedBy = await usersLeader(admins[0]).catch(() => null);
      pausedAt = Date.now();
      await pauseFor(natsPid, PAUSE_MS, async () => {
        for (const [k, u] of revokees.entries()) {
          const wait = pausedAt + REVOKE_AT_MS[k] - Date.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          // Through the two live nodes in turn; retried through an election.
          const store = admins[k % 2].store;
          revokedAt.set(u.hex, await revokeBy(store, u, pausedAt + PAUSE_MS + 15_000));
        }
      });
      continuedAt = Date.now();
      await new Promise((r) => setTimeout(r, AFTER_PAUSE_MS));
    } finally {
      stopLogins.resolve();
    }
    const attempts = await logins;

    // Invariant 1: no revoked user admitted after its revoke returned.
    for (const u of revokees) {
      assert(revokedAt.get(u.hex) != null, `the revoke of ${u.identity.handle} never returned`);
    }
    const late = attempts.filter((a) => {
      const r = revokedAt.get(a.user);
      return r != null && a.start > r && a.result === "admitted";
    });
    const lateLines = admissionLines(c).filter((l) => {
      const r = revokedAt.get(l.signPub);
      return r != null && l.at - Number(l.line.ms ?? 0) > r;
    });
    // Logins after each revoke were tried, on every node (a test that tried
    // none would prove nothing).
    const triedAfter = attempts.filter((a) => {
      const r = revokedAt.get(a.user);
      return r != null && a.start > r;
    });
    assertEquals(
      [0, 1, 2].map((i) => triedAfter.some((a) => a.node === i && a.result === "refused")),
      [true, true, true],
      "every node refused a revoked user at least once",
    );

    // Invariant 2: every acknowledged change is on every replica, once all
    // three report their replicas current (asked through each node in turn).
    const keys = [...revokees, keeper].map((u) => u.hex);
    const want = [...revokees.map(() => ["revoked"]), ["active"]];
    await settled(c, 45_000);
    const third = await nodeAccess(c, victim);
    const onNodes: string[][][] = [];
    try {
      for (const a of [admins[0], admins[1], third]) onNodes.push(await usersOnReplicas(a, keys));
    } finally {
      await third.store.close();
      await third.nc.close();
    }

    const count = (r: Attempt["result"]) => attempts.filter((a) => a.result === r).length;
    const keeperOk = attempts.filter((a) =>
      a.user === keeper.hex && a.result === "admitted" && a.start >= pausedAt &&
      a.start < continuedAt
    ).length;
    const revokeTimes = revokees.map((u) =>
      ((revokedAt.get(u.hex)! - pausedAt) / 1000).toFixed(1)
    );
    console.log(
      `fault pause (${what} ${victimName}, users' stream led by ${usersLedBy}, ` +
        `${PAUSE_MS / 1000} s): revokes returned at ` +
        `+${revokeTimes.join("/+")} s; logins ${attempts.length} (admitted ${count("admitted")}, ` +
        `refused ${count("refused")}, failed ${count("failed")}; the kept user admitted ` +
        `${keeperOk} times during the pause); revoked users admitted after their revoke: ` +
        `${late.length} by result, ${lateLines.length} by serve's log; ` +
        `every node has every change: ${
          onNodes.every((s) => JSON.stringify(s) === JSON.stringify(want))
        }; ` +
        `${((Date.now() - began) / 1000).toFixed(0)} s`,
    );
    assertEquals(late, [], "logins of revoked users admitted after the revoke returned");
    assertEquals(lateLines, [], "serve admitted a revoked user after the revoke returned");
    assertEquals(onNodes, [want, want, want], "what the replicas hold, asked through each node");
  } finally {
    for (const a of admins) {
      await a.store.close().catch(() => {});
      await a.nc.close().catch(() => {});
    }
  }
}

Deno.test("cluster faults: pause (meta leader, users' leader)", async (t) => {
  const c = await startServeCluster();
  try {
    await t.step(
      "pause: SIGSTOP of the meta leader's nats-server for 10 s",
      () => pauseFault(c, "meta leader"),
    );
    await t.step(
      "pause: SIGSTOP of the users' stream leader's nats-server for 10 s",
      () => pauseFault(c, "users' leader"),
    );
  } finally {
    await c.stop();
  }
});
