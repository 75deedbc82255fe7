/**
 * `serve --store kv` whose store loses its nats-server mid-run (issue 9): it
 * fails closed while the store is unreachable and serves again when it comes
 * back, without a restart of serve.
 *
 * On a single node the nats-server that holds the KV buckets is also the one
 * clients connect to. The supervisor restarts a killed child in well under a
 * second, too fast to observe, so the outage is first made with SIGSTOP for a
 * bounded time: the process is there, its sockets accept, and nothing answers
 * (the way a wedged or partitioned store looks). Then a real `kill -9`, which
 * the supervisor restarts, shows that the store's connection and change feed
 * come back on their own.
 */

import { connect } from "@nats-io/transport-node";
import { inboxPrefixFor } from "../lib/auth/acl.ts";
import { busUserAuthenticator } from "../lib/auth/nkey.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { addBusUser, type BusUser, connectAs } from "./helpers/bus.ts";
import { as, type Bus, genesis } from "./helpers/rooms_api.ts";
import { startServe } from "./helpers/serve_process.ts";
import { openServeStore } from "./helpers/serve_store.ts";
import { waitFor } from "./helpers/wait.ts";

/** How long the store stays stopped: longer than the store's 2 s op timeout. */
const OUTAGE_MS = 6000;
const UNAVAILABLE = ["store_unavailable", "auth_unavailable"];

/** One connection attempt with a short timeout; true if it was admitted. */
async function admitted(port: number, user: BusUser): Promise<boolean> {
  try {
    const nc = await connect({
      servers: `nats://127.0.0.1:${port}`,
      authenticator: busUserAuthenticator(user.kp),
      inboxPrefix: inboxPrefixFor(user.hex),
      reconnect: false,
      timeout: 1000,
    });
    await nc.close();
    return true;
  } catch {
    return false;
  }
}

Deno.test("serve --store kv answers 503 and admits nobody while its nats-server is down, then resumes without a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-kv-outage-" });
  const idFile = `${dir}/internal.id`;
  const s = await startServe({
    extraArgs: ["--store", "kv", "--bus-auth", "enforce", "--internal-id-file", idFile],
  });
  let stoppedPid: number | null = null;
  const opened: Array<{ close(): Promise<void> }> = [];
  try {
    const kv = await openServeStore(s, "kv", idFile);
    opened.push(kv);
    const alice = await addBusUser(kv, "alice", "admin");
    const bob = await addBusUser(kv, "bob");
    const bus: Bus = { s, store: kv };
    const api = as(bus, alice.identity);
    let n = 0;
    const createRoom = () =>
      api.post("/v1/rooms", { change: genesis(alice.identity, { subject: `outage.r${n++}` }) });

    // Before: a signed request and a connect are served.
    assertEquals((await createRoom()).status, 201);
    assert(await admitted(s.natsPort, bob), "bob is admitted before the outage");

    // 1. The store's nats-server stops answering.
    const admittedLines = () =>
      s.lines.filter((l) => l.msg === "connection admitted" && l.signPub === bob.hex).length;
    // serve logs an admission once its answer is on the socket, so the line
    // of the connect above may still be on its way: count from after it.
    await waitFor(() => admittedLines() >= 1, {
      timeoutMs: 5_000,
      what: "serve to log bob's admission before the outage",
    });
    const before = admittedLines();
    stoppedPid = s.natsPid;
    Deno.kill(stoppedPid, "SIGSTOP");
    const outageEnds = Date.now() + OUTAGE_MS;
    const answers: Array<[number, string]> = [];
    let connects = 0;
    // Bounded: at most 20 rounds, and none starts after the outage's end.
    for (let round = 0; round < 20 && Date.now() < outageEnds - 2500; round++) {
      for (const res of [await createRoom(), await api.get("/v1/rooms")]) {
        answers.push([res.status, String((res.body as { error?: unknown })?.error)]);
      }
      assert(!await admitted(s.natsPort, bob), "a connect was admitted while the store was down");
      connects++;
    }
    // Every signed request was refused with a 503 naming the store; none was accepted.
    assert(answers.length >= 2 && connects >= 1, `too few attempts: ${answers.length}`);
    for (const [status, error] of answers) {
      assertEquals(status, 503, JSON.stringify(answers));
      assert(UNAVAILABLE.includes(error), JSON.stringify(answers));
    }
    await new Promise((r) => setTimeout(r, Math.max(0, outageEnds - Date.now())));
    Deno.kill(stoppedPid, "SIGCONT");
    stoppedPid = null;

    // Service resumes in the same serve process.
    await waitFor(async () => (await createRoom()).status === 201, {
      timeoutMs: 15_000,
      what: "a signed room creation to succeed after the store came back",
    });
    assert(await admitted(s.natsPort, bob), "bob is admitted after the outage");
    // The attempts of the outage were never admitted late: one admission, this one.
    await waitFor(() => admittedLines() > before, {
      timeoutMs: 5_000,
      what: "serve to log bob's admission after the outage",
    });
    assertEquals(admittedLines(), before + 1);

    // 2. kill -9: the supervisor restarts the child; the store's connection,
    //    the callout and the change feed come back without restarting serve.
    const first = s.natsPid;
    Deno.kill(first, "SIGKILL");
    await s.waitFor((l) => l.msg === "nats-server restarted", 30_000);
    await waitFor(async () => (await createRoom()).status === 201, {
      timeoutMs: 20_000,
      what: "a signed room creation to succeed after the restart",
    });
    const live = await waitFor(() => connectAs(s.natsPort, bob).catch(() => null), {
      timeoutMs: 20_000,
      what: "bob to be admitted after the restart",
    });
    opened.push(live);
    // A revocation written to KV by another process reaches this serve's
    // enforcer: bob's live connection is cut and his reconnect refused.
    const closed = live.closed();
    // The other process's own connection reconnects on its own schedule after
    // the kill; until it has, its store answers StoreUnavailableError (fail
    // closed). A revoke is idempotent, so the writer retries, as an operator would.
    await waitFor(() => kv.revokeUser(bob.hex).then(() => true, () => false), {
      timeoutMs: 20_000,
      what: "the other process's revocation to be written",
    });
    await waitFor(() => live.isClosed(), {
      timeoutMs: 10_000,
      what: "bob's connection to be cut after his revocation",
    });
    await closed;
    assert(!await admitted(s.natsPort, bob), "a revoked user was admitted");
    await s.waitFor((l) =>
      l.msg === "connection cut" && l.signPub === bob.hex && l.reason === "user revoked"
    );
  } finally {
    if (stoppedPid !== null) Deno.kill(stoppedPid, "SIGCONT");
    for (const c of opened.reverse()) await c.close().catch(() => {});
    await s.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
