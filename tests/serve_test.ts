import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { freePort, isAlive, waitPortClosed } from "./helpers/ports.ts";
import { type ServeUnderTest, spawnUnibus, startServe } from "./helpers/serve_process.ts";
import { resolveNatsServerBin } from "../server/nats/binary.ts";

async function health(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${url}/healthz`);
  return { status: res.status, body: await res.json() };
}

async function waitHealth(url: string, want: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  let last = 0;
  while (Date.now() < deadline) {
    last = (await health(url)).status;
    if (last === want) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`/healthz answered ${last}, not ${want}, for ${ms} ms`);
}

Deno.test("serve answers /healthz with version, posture and data-plane state", async () => {
  const s = await startServe();
  try {
    const { status, body } = await health(s.httpUrl);
    assertEquals(status, 200);
    assertEquals(body.status, "ok");
    assertMatch(String(body.version), /^\d+\.\d+\.\d+$/);
    assertEquals(body.posture, {
      auth: "off",
      acl: false,
      tls: false,
      store: "sqlite",
      replicas: 1,
    });
    const dp = body.dataPlane as Record<string, unknown>;
    assertEquals(dp.connected, true);
    assertEquals(dp.jetstream, true);
    assert(typeof dp.serverName === "string" && dp.serverName.length > 0);

    const notFound = await fetch(`${s.httpUrl}/no/such/path`);
    assertEquals(notFound.status, 404);
    assertEquals((await notFound.json()).error, "not_found");

    const wrongMethod = await fetch(`${s.httpUrl}/healthz`, { method: "POST", body: "{}" });
    assertEquals(wrongMethod.status, 405);
    assertEquals((await wrongMethod.json()).error, "method_not_allowed");

    // Files that hold configuration and data are private to the service user.
    for (const f of ["nats-server.conf", "unibus.db"]) {
      assertEquals((await Deno.stat(`${s.dataDir}/${f}`)).mode! & 0o777, 0o600, f);
    }
  } finally {
    assertEquals((await s.stop()).code, 0);
  }
});

Deno.test("a nats-server child killed with SIGKILL is restarted and /healthz recovers", async () => {
  const s = await startServe();
  try {
    Deno.kill(s.natsPid, "SIGKILL");
    const exitLine = await s.waitFor((l) =>
      l.msg === "nats-server exited unexpectedly; restarting"
    );
    assertEquals(exitLine.signal, "SIGKILL");
    const restarted = await s.waitFor((l) => l.msg === "nats-server restarted", 15_000);
    assertEquals(restarted.restarts, 1);
    await waitHealth(s.httpUrl, 200, 10_000);
    const newPid = Number(
      s.lines.filter((l) => l.msg === "nats-server started").at(-1)?.pid,
    );
    assert(newPid !== s.natsPid && isAlive(newPid), "a new nats-server runs");
  } finally {
    assertEquals((await s.stop()).code, 0);
  }
});

Deno.test("/healthz answers 503 while the data plane is down, 200 once it is back", async () => {
  // An external nats-server the test controls, so "down" lasts as long as we say.
  const bin = (await resolveNatsServerBin({ env: Deno.env.toObject() })).path;
  const natsPort = freePort();
  const jsDir = await Deno.makeTempDir({ prefix: "unibus-ext-js-" });
  const startNats = () =>
    new Deno.Command(bin, {
      args: ["-a", "127.0.0.1", "-p", String(natsPort), "-js", "-sd", jsDir],
      stdout: "null",
      stderr: "null",
    }).spawn();
  let nats = startNats();
  let s: Awaited<ReturnType<typeof startServe>> | null = null;
  try {
    s = await startServe({ extraArgs: ["--nats-url", `nats://127.0.0.1:${natsPort}`] });
    assertEquals((await health(s.httpUrl)).status, 200);
    nats.kill("SIGKILL");
    await nats.status;
    await waitHealth(s.httpUrl, 503, 10_000);
    const down = await health(s.httpUrl);
    assertEquals(down.body.status, "unavailable");
    assertEquals((down.body.dataPlane as Record<string, unknown>).connected, false);
    nats = startNats();
    await waitHealth(s.httpUrl, 200, 15_000);
  } finally {
    await s?.stop();
    try {
      nats.kill("SIGKILL");
    } catch { /* already gone */ }
    await nats.status;
    await Deno.remove(jsDir, { recursive: true });
  }
});

Deno.test("SIGTERM stops serve with status 0 and leaves no nats-server behind", async () => {
  const s = await startServe();
  const status = await s.stop();
  assertEquals(status.code, 0);
  assert(!isAlive(s.natsPid), "nats-server is gone");
  await waitPortClosed(s.natsPort, 2000);
  await waitPortClosed(s.httpPort, 2000);
  assert(s.lines.some((l) => l.msg === "stopped"));
});

Deno.test("after serve is SIGKILLed, the next serve reaps the stale child and reuses the ports", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "unibus-reap-" });
  const httpPort = freePort();
  const natsPort = freePort();
  const first = await startServe({ dataDir, httpPort, natsPort });
  let second: ServeUnderTest | undefined;
  try {
    Deno.kill(first.child.pid, "SIGKILL");
    await first.finished;
    assert(isAlive(first.natsPid), "SIGKILL of serve leaves its child running");
    // A second serve that fails to start (the very failure this test looks
    // for: the stale child still holds the ports) must not leave it behind.
    second = await startServe({ dataDir, httpPort, natsPort });
    assert(!isAlive(first.natsPid), "the stale nats-server was stopped");
    assert(
      second.lines.some((l) => l.msg === "stopping a nats-server left behind by an earlier serve"),
    );
    assertEquals((await health(second.httpUrl)).status, 200);
  } finally {
    await second?.stop();
    if (isAlive(first.natsPid)) Deno.kill(first.natsPid, "SIGKILL");
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("a second serve on a data dir in use is refused", async () => {
  const s = await startServe();
  try {
    const p = spawnUnibus([
      "serve",
      "--data-dir",
      s.dataDir,
      "--http-addr",
      `127.0.0.1:${freePort()}`,
      "--nats-port",
      String(freePort()),
    ]);
    const status = await p.finished;
    assertEquals(status.code, 1);
    assertMatch(p.stderr(), /in use by another unibus serve/);
    assertEquals((await health(s.httpUrl)).status, 200);
  } finally {
    await s.stop();
  }
});

Deno.test("bad flags exit 2 with one line on stderr", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["serve", "--nope"], /unknown option --nope/],
    [["serve", "--http-addr", "8470"], /--http-addr: "8470" is not host:port/],
    [["serve", "--nats-port", "99999"], /--nats-port: port 99999 is out of range/],
    [["serve", "--http-addr", "0.0.0.0:8470"], /is not loopback.*--insecure-public/],
    [["serve", "--store", "mysql"], /--store: "mysql" is not a store/],
    [["serve", "--nats-port"], /--nats-port needs a value/],
    [["frobnicate"], /unknown command "frobnicate"/],
  ];
  for (const [args, want] of cases) {
    const p = spawnUnibus(args);
    const status = await p.finished;
    assertEquals(status.code, 2, args.join(" "));
    const err = p.stderr().trimEnd();
    assertEquals(err.split("\n").length, 1, `one line for ${args.join(" ")}: ${err}`);
    assertMatch(err, want);
  }
});

Deno.test("an unreachable --nats-url is a clear error, not a hang", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "unibus-ext-" });
  try {
    const port = freePort();
    const p = spawnUnibus([
      "serve",
      "--data-dir",
      dataDir,
      "--http-addr",
      `127.0.0.1:${freePort()}`,
      "--nats-url",
      `nats://127.0.0.1:${port}`,
    ]);
    const status = await p.finished;
    assertEquals(status.code, 1);
    assertMatch(p.stderr(), new RegExp(`cannot reach NATS at nats://127.0.0.1:${port}`));
    assert(!p.stderr().includes("    at "), "no stack trace");
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("a nats-server that cannot start is reported with its own last lines", async () => {
  const blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const natsPort = (blocker.addr as Deno.NetAddr).port;
  const dataDir = await Deno.makeTempDir({ prefix: "unibus-busy-" });
  try {
    const p = spawnUnibus([
      "serve",
      "--data-dir",
      dataDir,
      "--http-addr",
      `127.0.0.1:${freePort()}`,
      "--nats-port",
      String(natsPort),
    ]);
    const status = await p.finished;
    assertEquals(status.code, 1);
    assertMatch(p.stderr(), /nats-server exited during start/);
    assertMatch(p.stderr(), /address already in use/);
  } finally {
    blocker.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("serve works against an external NATS given with --nats-url", async () => {
  // A bare nats-server with JetStream: another serve's nats-server would not
  // do, its anonymous "local" user is a bus user without JetStream.
  const bin = (await resolveNatsServerBin({ env: Deno.env.toObject() })).path;
  const natsPort = freePort();
  const jsDir = await Deno.makeTempDir({ prefix: "unibus-ext-js-" });
  const ext = new Deno.Command(bin, {
    args: ["-a", "127.0.0.1", "-p", String(natsPort), "-js", "-sd", jsDir],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const s = await startServe({ extraArgs: ["--nats-url", `nats://127.0.0.1:${natsPort}`] });
    try {
      assertEquals(s.lines.find((l) => l.msg === "unibus ready")!.managedNats, false);
      assertEquals((await health(s.httpUrl)).status, 200);
    } finally {
      assertEquals((await s.stop()).code, 0);
    }
  } finally {
    ext.kill("SIGKILL");
    await ext.status;
    await Deno.remove(jsDir, { recursive: true });
  }
});

Deno.test("UNIBUS_NATS_MONITOR=1 opens nats-server's monitoring endpoint on loopback", async () => {
  // On a port of the test's choosing, so a busy 8222 (another node, another
  // test run) neither fails this test nor lets it pass without checking.
  const port = freePort();
  const s = await startServe({
    env: { UNIBUS_NATS_MONITOR: "1", UNIBUS_NATS_MONITOR_PORT: String(port) },
  });
  try {
    const res = await fetch(`http://127.0.0.1:${port}/varz`);
    assertEquals(res.status, 200);
    const varz = await res.json();
    assertEquals(varz.port, s.natsPort);
    const conf = await Deno.readTextFile(`${s.dataDir}/nats-server.conf`);
    assertMatch(conf, /debug: false/);
    assertMatch(conf, new RegExp(`^http: "127\\.0\\.0\\.1:${port}"$`, "m"));
  } finally {
    await s.stop();
  }
  await waitPortClosed(port, 2000);
});

Deno.test("a UNIBUS_NATS_MONITOR_PORT that is not a port stops serve with one line", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "unibus-serve-" });
  try {
    const p = spawnUnibus(
      ["serve", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0"].concat(
        ["--nats-port", String(freePort())],
      ),
      { UNIBUS_NATS_MONITOR: "1", UNIBUS_NATS_MONITOR_PORT: "82x2" },
    );
    const status = await p.finished;
    assertEquals(status.code, 1, p.stderr());
    assertMatch(p.stderr(), /UNIBUS_NATS_MONITOR_PORT must be a port/);
    assertEquals(p.stderr().trim().split("\n").length, 1, p.stderr());
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
