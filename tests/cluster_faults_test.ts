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
  type Health = Awaited<ReturnType<ServeCluster["health"]>> | null;
  let last: Health[] = [];
  try {
    return await waitUntil("all three nodes healthy, replicas current", ms, async () => {
      last = await Promise.all([0, 1, 2].map((i) => c.health(i).catch(() => null)));
      const cls = last.map((h) =>
        h?.status === 200
          ? h.body.cluster as { replicasCurrent: boolean; metaLeader: string | null }
          : null
      );
      const meta = cls[0]?.metaLeader ?? null;
      return cls.every((cl) => cl?.replicasCurrent === true && cl.metaLeader === meta) && meta;
    });
  } catch (err) {
    // What each node said last: which node, which stream, which problem; and
    // every answer to the stream info of each stream shown behind (a replica
    // that still believes it leads answers too, naming another leader).
    const said = last.map((h, i) =>
      `${c.nodes[i].name}: ${h?.status} ${JSON.stringify(h?.body ?? {})}`
    )
      .join("\n");
    const lagging = new Set(last.flatMap((h) => {
      const streams = (h?.body.cluster as { streams?: Array<{ stream: string; lagged: string[] }> })
        ?.streams ?? [];
      return streams.filter((st) => st.lagged.length > 0).map((st) => st.stream);
    }));
    const answers = await streamInfoAnswers(c, [...lagging]).catch((e) => String(e));
    throw new Error(
      `${(err as Error).message}; last /healthz:\n${said.slice(0, 8000)}\n` +
        `stream info answers:\n${answers}`,
    );
  }
}

/** Every answer to each stream's info request (not only the first), as node 1 hears them. */
async function streamInfoAnswers(c: ServeCluster, streams: string[]): Promise<string> {
  if (streams.length === 0) return "(none behind)";
  const id = await loadIdentity(c.nodes[0].internalIdFile);
  const nc = await connect({
    servers: c.nodes[0].natsUrl,
    authenticator: nkeyAuthenticatorFor(new NativeNkeyPair(Prefix.User, id.signSeed)),
    timeout: 3000,
  });
  try {
    const out: string[] = [];
    for (const stream of streams) {
      const it = await nc.requestMany(`$JS.API.STREAM.INFO.${stream}`, "", { maxWait: 2000 });
      for await (const m of it) {
        out.push(`${stream}: ${JSON.stringify(m.json<{ cluster?: unknown }>().cluster)}`);
      }
    }
    return out.join("\n");
  } finally {
    await nc.close();
  }
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

/** A user added through `store` (as `user add --store kv` would). */
async function addUser(store: Store, u: BusUser): Promise<void> {
  await store.addUser({
    signPub: u.hex,
    kexPub: null,
    kexSig: null,
    handle: u.identity.handle!,
    role: "member",
  });
}

/**
 * New users added one after another through `store` until `stop` resolves
 * (at most `max`): the ones whose add returned (acknowledged), and the
 * errors of the others.
 */
async function writeLoop(
  store: Store,
  prefix: string,
  stop: Promise<void>,
  max: number,
): Promise<{ acked: BusUser[]; errors: string[] }> {
  let stopped = false;
  stop.then(() => stopped = true);
  const acked: BusUser[] = [];
  const errors: string[] = [];
  for (let n = 0; n < max && !stopped; n++) {
    const u = busUserOf(generateIdentity(`${prefix}${n}`));
    try {
      await addUser(store, u);
      acked.push(u);
    } catch (err) {
      errors.push(`${(err as Error).name}: ${(err as Error).message}`.slice(0, 160));
      await Promise.race([stop, new Promise((r) => setTimeout(r, 100))]);
    }
  }
  return { acked, errors };
}

/**
 * Once all three report every replica current: what every replica of the
 * users' stream holds for `keys`, asked through each node, against `want`.
 */
async function onEveryReplica(c: ServeCluster, keys: string[], want: string[][]): Promise<boolean> {
  await settled(c, 90_000);
  const got: string[][][] = [];
  for (const i of [0, 1, 2]) {
    const a = await nodeAccess(c, i);
    try {
      got.push(await usersOnReplicas(a, keys));
    } finally {
      await a.store.close();
      await a.nc.close();
    }
  }
  assertEquals(got, [want, want, want], "what the replicas hold, asked through each node");
  return true;
}

/** Waits until node `i`'s /healthz answers `status`; the body then. */
function healthIs(c: ServeCluster, i: number, status: number, ms: number) {
  return waitUntil(`${c.nodes[i].name} /healthz ${status}`, ms, async () => {
    const h = await c.health(i).catch(() => null);
    return h?.status === status ? h.body : null;
  });
}

/**
 * partition: node 3 cut off from the other two (its routes cut at the test's
 * proxies) for 15 s while a revoke and a user add go through node 1.
 */
async function partitionFault(c: ServeCluster): Promise<void> {
  const began = Date.now();
  await settled(c, 60_000);
  const cut = 2;
  const a = await nodeAccess(c, 0);
  try {
    const keeper = busUserOf(generateIdentity("p-keeper"));
    const revokee = busUserOf(generateIdentity("p-revokee"));
    for (const u of [keeper, revokee]) await addUser(a.store, u);
    c.proxies!.isolate(cut);
    const cutAt = Date.now();
    // The minority: no meta leader, so /healthz 503 and no login confirmed.
    const minority = await healthIs(c, cut, 503, 30_000);
    const minorityAt = Date.now();
    const refusedThere = await waitUntil(
      "the cut-off node refusing logins",
      30_000,
      async () => (await login(c, cut, keeper)).result !== "admitted",
    );
    // The majority: a revoke and an add through node 1 return (retried
    // through an election of a leader the cut-off node held).
    const revokedAt = await revokeBy(a.store, revokee, Date.now() + 30_000);
    assert(revokedAt !== null, "the revoke through the majority never returned");
    const added = busUserOf(generateIdentity("p-added"));
    await waitUntil(
      "a user added through the majority",
      30_000,
      () => addUser(a.store, added).then(() => true, () => false),
    );
    const admitted = await waitUntil(
      "a login on the majority",
      30_000,
      async () => (await login(c, 1, keeper)).result === "admitted",
    );
    // While cut off, node 3 admits no one: not the revoked user, not the others.
    const tries = await Promise.all([keeper, revokee, added].map((u) => login(c, cut, u)));
    assertEquals(tries.map((t) => t.result === "admitted"), [false, false, false]);
    const writeThere = await nodeAccess(c, cut).then(
      async (b) => {
        try {
          await addUser(b.store, busUserOf(generateIdentity("p-minority")));
          return "stored";
        } catch (err) {
          return (err as Error).name;
        } finally {
          await b.store.close().catch(() => {});
          await b.nc.close().catch(() => {});
        }
      },
      (err) => `no store: ${(err as Error).name}`,
    );
    assert(writeThere !== "stored", "a write through the cut-off node was acknowledged");
    c.proxies!.heal();
    const healedAt = Date.now();
    const agree = await onEveryReplica(
      c,
      [keeper.hex, revokee.hex, added.hex],
      [["active"], ["revoked"], ["active"]],
    );
    const lateRevokee = (await Promise.all([0, 1, 2].map((i) => login(c, i, revokee))))
      .filter((t) => t.result === "admitted");
    assertEquals(lateRevokee, [], "the revoked user admitted after the partition healed");
    const problems = (minority.cluster as { problems?: string[] } | undefined)?.problems ?? [];
    console.log(
      `fault partition (${c.nodes[cut].name} cut off ${
        ((healedAt - began) / 1000).toFixed(0)
      } s): ` +
        `minority /healthz 503 (${problems.join("; ") || "no cluster problems named"}) after ` +
        `${
          ((minorityAt - cutAt) / 1000).toFixed(1)
        } s, refuses logins ${refusedThere}, its write ` +
        `${writeThere}; majority revoke returned after ${
          ((revokedAt - cutAt) / 1000).toFixed(1)
        } s, ` +
        `add and login ${
          admitted ? "served" : "failed"
        }; after healing all three agree: ${agree} ` +
        `(${((Date.now() - healedAt) / 1000).toFixed(0)} s); ${
          ((Date.now() - began) / 1000).toFixed(0)
        } s`,
    );
  } finally {
    c.proxies!.heal();
    await a.store.close().catch(() => {});
    await a.nc.close().catch(() => {});
  }
}

/** all down: `kill -9` of all three nodes while users are added, then all three started again. */
async function allDownFault(c: ServeCluster): Promise<void> {
  const began = Date.now();
  await settled(c, 60_000);
  const a = await nodeAccess(c, 0);
  let acked: BusUser[] = [];
  let errors: string[] = [];
  try {
    const stop = Promise.withResolvers<void>();
    const writes = writeLoop(a.store, "down", stop.promise, 500);
    await new Promise((r) => setTimeout(r, 1500));
    await Promise.all([0, 1, 2].map((i) => c.kill9(i)));
    await new Promise((r) => setTimeout(r, 500));
    stop.resolve();
    ({ acked, errors } = await writes);
  } finally {
    await a.store.close().catch(() => {});
    await a.nc.close().catch(() => {});
  }
  assert(acked.length > 0, `no write was acknowledged before the kill: ${errors[0]}`);
  for (const i of [0, 1, 2]) c.start(i);
  await Promise.all([0, 1, 2].map((i) => c.ready(i, 90_000)));
  const restartedIn = (Date.now() - began) / 1000;
  const agree = await onEveryReplica(c, acked.map((u) => u.hex), acked.map(() => ["active"]));
  const back = await waitUntil(
    "an acknowledged user logs in after the restart",
    30_000,
    async () => (await login(c, 1, acked.at(-1)!)).result === "admitted",
  );
  console.log(
    `fault all down (kill -9 of all three during writes): ${acked.length} adds acknowledged, ` +
      `${errors.length} failed (${errors[0] ?? "none"}); ready again ${restartedIn.toFixed(0)} s ` +
      `after the fault began; every acknowledged add on every replica: ${agree}; ` +
      `login after restart: ${back}; ${((Date.now() - began) / 1000).toFixed(0)} s`,
  );
}

/** Every file under `dir` (recursively) whose path ends with `suffix`. */
async function filesUnder(dir: string, suffix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await filesUnder(path, suffix));
    else if (e.isFile && path.endsWith(suffix)) out.push(path);
  }
  return out;
}

/**
 * corruption: node 3 stopped, bytes flipped in its copy of the users' stream,
 * a user added meanwhile; started again, it repairs itself from its peers or
 * stays unhealthy, and no replica ever holds a wrong value.
 */
async function corruptionFault(c: ServeCluster): Promise<void> {
  const began = Date.now();
  await settled(c, 60_000);
  const victim = 2;
  const a = await nodeAccess(c, 0);
  try {
    const before = busUserOf(generateIdentity("c-before"));
    await addUser(a.store, before);
    await healthIs(c, victim, 200, 30_000);
    await settled(c, 30_000);
    await c.kill9(victim);
    const blocks = (await filesUnder(c.nodes[victim].dataDir, ".blk"))
      .filter((f) => f.includes("/KV_UNIBUS_users/"));
    assert(blocks.length > 0, "no block file of the users' stream on the stopped node");
    let flipped = 0;
    for (const f of blocks) {
      const bytes = await Deno.readFile(f);
      if (bytes.length === 0) continue;
      // The middle of every block: message headers, keys and values.
      const from = Math.floor(bytes.length / 3);
      for (let k = from; k < Math.min(bytes.length, from + 64); k++) bytes[k] ^= 0xff;
      await Deno.writeFile(f, bytes);
      flipped++;
    }
    const during = busUserOf(generateIdentity("c-during"));
    await addUser(a.store, during);
    c.start(victim);
    // The other two keep serving while it starts.
    const served = (await login(c, 0, during)).result;
    await c.ready(victim, 90_000);
    const agree = await onEveryReplica(c, [before.hex, during.hex], [["active"], ["active"]]);
    const victimLog = c.nodes[victim].proc!.lines.map((l) => String(l.msg)).join("\n");
    console.log(
      `fault corruption (${flipped} block file(s) of ${c.nodes[victim].name}'s users' stream, ` +
        `64 bytes flipped each, while stopped): the others served a login (${served}); ` +
        `on start it rejoined, healthy with replicas current; every replica right: ${agree}` +
        `${/corrupt|checksum/i.test(victimLog) ? " (serve's log reports the damage)" : ""}; ` +
        `${((Date.now() - began) / 1000).toFixed(0)} s`,
    );
  } finally {
    await a.store.close().catch(() => {});
    await a.nc.close().catch(() => {});
  }
}

/** Fills the filesystem of `dir` (a small tmpfs) with one file; its path. */
async function fill(dir: string): Promise<string> {
  const path = `${dir}/filler`;
  const f = await Deno.open(path, { write: true, create: true });
  try {
    const chunk = new Uint8Array(1 << 20);
    for (let n = 0; n < 4096; n++) await f.write(chunk);
  } catch {
    /* full: what was wanted */
  } finally {
    f.close();
  }
  return path;
}

/**
 * disk full: node 3's data dir is a tmpfs of its own; it fills while users
 * are added through node 1, is freed, and node 3 restarted (what the
 * operator does).
 */
async function diskFullFault(c: ServeCluster, mount: string): Promise<void> {
  const began = Date.now();
  await settled(c, 60_000);
  const victim = 2;
  const a = await nodeAccess(c, 0);
  let acked: BusUser[] = [];
  let errors: string[] = [];
  let health: { status: number; body: Record<string, unknown> } | null = null;
  try {
    const filler = await fill(mount);
    const stop = Promise.withResolvers<void>();
    const writes = writeLoop(a.store, "full", stop.promise, 500);
    await new Promise((r) => setTimeout(r, 5000));
    health = await c.health(victim).catch(() => null);
    stop.resolve();
    ({ acked, errors } = await writes);
    await Deno.remove(filler);
  } finally {
    await a.store.close().catch(() => {});
    await a.nc.close().catch(() => {});
  }
  const victimLog = c.nodes[victim].proc!.lines.map((l) => JSON.stringify(l)).join("\n");
  await c.kill9(victim);
  c.start(victim);
  await c.ready(victim, 90_000);
  // The operator's steps (docs/operations.md "Faults"): restart; if the node
  // does not catch up within a minute (a stream file cut short when the disk
  // filled), rebuild it from its peers: stop it, move its JetStream store
  // aside, start it.
  let remedy = "restart";
  try {
    await settled(c, 60_000);
  } catch {
    remedy = "restart, then rebuild from its peers";
    await c.kill9(victim);
    const js = `${c.nodes[victim].dataDir}/jetstream`;
    await Deno.rename(js, `${js}.aside`);
    c.start(victim);
    await c.ready(victim, 90_000);
  }
  const agree = await onEveryReplica(c, acked.map((u) => u.hex), acked.map(() => ["active"]));
  console.log(
    `fault disk full (${c.nodes[victim].name}'s data dir, tmpfs, filled): ${acked.length} adds ` +
      `acknowledged through n1, ${errors.length} failed (${errors[0] ?? "none"}); ` +
      `${c.nodes[victim].name} /healthz ${health?.status ?? "no answer"} while full` +
      `${
        /out of (file )?resources|no space/i.test(victimLog) ? ", its log says out of space" : ""
      }; ` +
      `freed, back by ${remedy}, every acknowledged add on every replica: ${agree}; ` +
      `${((Date.now() - began) / 1000).toFixed(0)} s`,
  );
}

/** A tmpfs of `mb` MiB mounted on a new directory, or null when this process cannot mount. */
async function smallFilesystem(mb: number): Promise<string | null> {
  if (Deno.uid() !== 0) return null;
  const dir = await Deno.makeTempDir({ prefix: "unibus-tmpfs-" });
  const r = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${mb}m,mode=0700`, "tmpfs", dir],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => null);
  if (r?.success) return dir;
  await Deno.remove(dir).catch(() => {});
  return null;
}

async function unmount(dir: string): Promise<void> {
  await new Deno.Command("umount", { args: [dir], stdout: "null", stderr: "null" }).output()
    .catch(() => {});
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}

/**
 * A fresh cluster with every replica current, the state each fault starts
 * from. A cold start of nats-server 2.10.27 has, once in CI, left a stream's
 * replica believing it leads and answering for the stream for minutes; that
 * is a start that did not form, not a fault under test: one more fresh
 * cluster, with what the first one said printed.
 */
async function startSettledCluster(
  opts: Parameters<typeof startServeCluster>[0],
): Promise<ServeCluster> {
  for (let attempt = 1;; attempt++) {
    const c = await startServeCluster(opts);
    try {
      await settled(c, 45_000);
      return c;
    } catch (err) {
      await c.stop();
      if (attempt >= 2) throw err;
      console.log(
        `fault test: the fresh cluster did not settle; starting another. ${(err as Error).message}`,
      );
    }
  }
}

Deno.test("cluster faults: pause, partition, corruption, all down, disk full", async (t) => {
  // Node 3's data dir on a small filesystem of its own, for the disk-full
  // fault (root only: CI runs as root).
  const mount = await smallFilesystem(256);
  try {
    const c = await startSettledCluster({
      routeProxies: true,
      dataDirOf: (i) => i === 2 && mount ? mount : undefined,
    });
    try {
      await t.step(
        "pause: SIGSTOP of the meta leader's nats-server for 10 s",
        () => pauseFault(c, "meta leader"),
      );
      await t.step(
        "pause: SIGSTOP of the users' stream leader's nats-server for 10 s",
        () => pauseFault(c, "users' leader"),
      );
      await t.step("partition: one node cut off from the other two", () => partitionFault(c));
      await t.step(
        "corruption: bytes flipped in a stopped node's stream files",
        () => corruptionFault(c),
      );
      await t.step("all down: kill -9 of all three during writes", () => allDownFault(c));
      await t.step({
        name: "disk full: one node's data dir fills, is freed, the node restarted",
        ignore: mount === null,
        fn: () => diskFullFault(c, mount!),
      });
      if (mount === null) console.log("fault disk full: skipped (needs root to mount a tmpfs)");
    } finally {
      await c.stop();
    }
  } finally {
    if (mount) await unmount(mount);
  }
});
