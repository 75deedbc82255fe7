import { UsageError } from "../cli/args.ts";
import { parseServeArgs } from "../cli/serve.ts";
import { createLogger, type Logger } from "../lib/log.ts";
import { RouteCaError } from "../server/cluster/route_tls.ts";
import { Lifecycle } from "../server/lifecycle.ts";
import { DEFAULT_LIMITS } from "../server/limits.ts";
import { ServeOptionsError, type UncheckedServeOptions } from "../server/options.ts";
import { runServe } from "../server/serve.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "./helpers/assert.ts";
import { freePort, isAlive, waitPortClosed } from "./helpers/ports.ts";
import { makeRoutePki, makeTestPki } from "./helpers/tls.ts";

/** A logger whose lines are kept, parsed, for the test to read. */
function recordingLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { log: createLogger("serve", { sink: (l) => lines.push(JSON.parse(l)) }), lines };
}

Deno.test("the lifecycle stops newest first, once, and a failing step does not stop the others", async () => {
  const { log, lines } = recordingLogger();
  const life = new Lifecycle(log);
  const stopped: string[] = [];
  life.started("lock", () => {
    stopped.push("lock");
  });
  life.started("child", async () => {
    await new Promise((r) => setTimeout(r, 1));
    stopped.push("child");
  });
  life.started("connection", () => {
    throw new Error("already closed");
  });
  life.started("listener", () => {
    stopped.push("listener");
  });
  await life.stopAll();
  assertEquals(stopped, ["listener", "child", "lock"]);
  const failed = lines.filter((l) => l.msg === "shutdown step failed");
  assertEquals(failed.map((l) => [l.step, l.error]), [["connection", "already closed"]]);
  await life.stopAll();
  assertEquals(stopped.length, 3, "a second stopAll runs nothing again");
});

Deno.test("runServe stops what it started when a later stage fails: child, connections, lock", async () => {
  // The HTTP stage comes last; a port already taken makes it fail after the
  // nats-server child, the connections and the store have started.
  const blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const httpPort = (blocker.addr as Deno.NetAddr).port;
  const natsPort = freePort();
  const dataDir = await Deno.makeTempDir({ prefix: "unibus-stages-" });
  const { log, lines } = recordingLogger();
  try {
    const opts = parseServeArgs([
      "--data-dir",
      dataDir,
      "--http-addr",
      `127.0.0.1:${httpPort}`,
      "--nats-port",
      String(natsPort),
      // A fixed store: a nearly full temp disk must not refuse the start
      // before the stage this test is about.
      "--jetstream-max-store",
      "256MiB",
    ], {});
    await assertRejects(() => runServe(opts, log), Error, `cannot listen on 127.0.0.1:${httpPort}`);
    const started = lines.find((l) => l.msg === "nats-server started");
    assert(started, "the child had started before the HTTP stage");
    assert(!isAlive(Number(started.pid)), "the nats-server child outlived serve");
    await waitPortClosed(natsPort, 5000);
    for (const f of ["serve.pid", "nats-server.pid"]) {
      const left = await Deno.stat(`${dataDir}/${f}`).then(() => true, () => false);
      assert(!left, `${f} was left behind`);
    }
    assertEquals(lines.filter((l) => l.msg === "shutdown step failed"), []);
  } finally {
    blocker.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

const PASS = "0123456789abcdef-route";
/** A clustered node's flags, with `changes` (a null value drops the flag). */
function clusterFlags(changes: Record<string, string | null> = {}): string[] {
  const flags: Record<string, string | null> = {
    "bus-auth": "enforce",
    store: "kv",
    routes: "nats://127.0.0.1:6251,nats://127.0.0.1:6252",
    "callout-issuer-file": "/srv/issuer.nk",
    "cluster-pass": PASS,
    ...changes,
  };
  return Object.entries(flags).flatMap(([k, v]) => v === null ? [] : [`--${k}`, v]);
}

/**
 * A single node as an embedding would write it, without the CLI. Its ports
 * are `takenPort`, so that a start the checks failed to refuse stops at once
 * (nats-server cannot bind) instead of running.
 */
function singleNode(dataDir: string, takenPort: number): UncheckedServeOptions {
  return {
    httpHost: "127.0.0.1",
    httpPort: takenPort,
    natsHost: "127.0.0.1",
    natsPort: takenPort,
    dataDir,
    dbPath: `${dataDir}/unibus.db`,
    auditLog: `${dataDir}/audit.log`,
    store: "sqlite",
    natsUrl: null,
    natsServerBin: null,
    serverName: "n1",
    busAuth: "off",
    internalIdFile: null,
    tls: null,
    insecurePublic: false,
    maxBodyBytes: 1024 * 1024,
    natsMonitorPort: null,
    calloutIssuerFile: null,
    cluster: null,
    limits: { ...DEFAULT_LIMITS },
  };
}

/** A clustered node as an embedding would write it. */
function clusterNode(dataDir: string, takenPort: number): UncheckedServeOptions {
  return {
    ...singleNode(dataDir, takenPort),
    dbPath: undefined,
    store: "kv",
    kvReplicas: 1,
    kvBootstrapTimeoutMs: 120_000,
    busAuth: "enforce",
    calloutIssuerFile: "/srv/issuer.nk",
    cluster: {
      name: "unibus",
      host: "127.0.0.1",
      port: 6250,
      routes: ["nats://127.0.0.1:6251", "nats://127.0.0.1:6252"],
      user: "unibus-cluster",
      pass: { kind: "flag", value: PASS },
      routeTls: null,
    },
  };
}

function cliRefusal(argv: string[]): string {
  try {
    parseServeArgs(argv, {});
  } catch (err) {
    assert(err instanceof UsageError, `expected a UsageError, got ${err}`);
    return err.message;
  }
  throw new Error(`the CLI accepted: ${argv.join(" ")}`);
}

Deno.test("runServe itself refuses every posture the CLI refuses, with the same message, before touching the data dir", async () => {
  const parent = await Deno.makeTempDir({ prefix: "unibus-posture-" });
  const dataDir = `${parent}/never-created`;
  const blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const taken = (blocker.addr as Deno.NetAddr).port;
  const { log, lines } = recordingLogger();
  const routeTls = { certFile: "/r.crt", keyFile: "/r.key", caFile: "/ca.crt" };
  const dataTls = { certFile: "/s.crt", keyFile: "/s.key", caFile: "/ca.crt" };
  const single = singleNode(dataDir, taken);
  const cluster = clusterNode(dataDir, taken);
  const clusterOf = (c: UncheckedServeOptions) => c.cluster!;
  // [what the CLI is given, what an embedding passes, the reason]
  const cases: Array<[string[], UncheckedServeOptions, RegExp]> = [
    [
      ["--store", "kv", "--routes", "nats://127.0.0.1:6251", "--cluster-pass", PASS],
      { ...cluster, busAuth: "off", calloutIssuerFile: null },
      /clustered node needs --bus-auth enforce/,
    ],
    [
      ["--bus-auth", "enforce", "--routes", "nats://127.0.0.1:6251", "--cluster-pass", PASS],
      { ...cluster, store: "sqlite", dbPath: `${dataDir}/unibus.db`, calloutIssuerFile: null },
      /clustered node needs --store kv/,
    ],
    [
      clusterFlags({ "callout-issuer-file": null }),
      { ...cluster, calloutIssuerFile: null },
      /needs --callout-issuer-file/,
    ],
    [
      ["--callout-issuer-file", "/srv/issuer.nk"],
      { ...single, calloutIssuerFile: "/srv/issuer.nk" },
      /--callout-issuer-file needs --bus-auth enforce/,
    ],
    [
      ["--bus-auth", "enforce", "--nats-url", "nats://127.0.0.1:4222"],
      { ...single, busAuth: "enforce", natsUrl: "nats://127.0.0.1:4222" },
      /needs the managed nats-server/,
    ],
    [
      clusterFlags({
        "route-tls-cert": "/r.crt",
        "route-tls-key": "/r.key",
        "route-tls-ca": "/ca.crt",
        "tls-cert": "/s.crt",
        "tls-key": "/s.key",
        "tls-ca": "/ca.crt",
      }),
      { ...cluster, tls: dataTls, cluster: { ...clusterOf(cluster), routeTls } },
      /--route-tls-ca must not be the data-plane CA/,
    ],
    [
      clusterFlags({ "cluster-host": "0.0.0.0" }),
      { ...cluster, cluster: { ...clusterOf(cluster), host: "0.0.0.0" } },
      /--cluster-host 0.0.0.0 is not loopback: routes off this host need --route-tls-cert/,
    ],
    [
      clusterFlags({ routes: "nats://10.0.0.2:6250" }),
      { ...cluster, cluster: { ...clusterOf(cluster), routes: ["nats://10.0.0.2:6250"] } },
      /route to 10.0.0.2 is not loopback/,
    ],
    [
      clusterFlags({ "cluster-pass": "tooshort" }),
      { ...cluster, cluster: { ...clusterOf(cluster), pass: { kind: "flag", value: "tooshort" } } },
      /--cluster-pass: the route secret must be at least 16 characters/,
    ],
    [
      ["--bus-auth", "enforce", "--http-addr", "0.0.0.0:8470"],
      { ...single, busAuth: "enforce", httpHost: "0.0.0.0" },
      /--http-addr 0.0.0.0 is not loopback: a public bind needs --tls-cert/,
    ],
    [
      ["--nats-host", "192.0.2.10"],
      { ...single, natsHost: "192.0.2.10" },
      /--nats-host 192.0.2.10 is not loopback: with --bus-auth off .* --insecure-public/,
    ],
    [
      ["--max-body", "9MiB"],
      { ...single, maxBodyBytes: 9 * 1024 * 1024 },
      /--max-body: must be between 1KiB and 8MiB/,
    ],
  ];
  try {
    for (const [argv, options, reason] of cases) {
      const fromCli = cliRefusal(argv);
      assertMatch(fromCli, reason);
      const err = await assertRejects(() => runServe(options, log), ServeOptionsError);
      assertEquals(err.message, fromCli, `runServe and the CLI differ for ${argv.join(" ")}`);
    }
    const created = await Deno.stat(dataDir).then(() => true, () => false);
    assert(!created, "a refused start created the data dir");
    assertEquals(lines, [], "a refused start logged as if it had started");
    // What the compiler cannot see is checked too: a cast, or JavaScript.
    const cast = { ...cluster, kvReplicas: 2 } as UncheckedServeOptions;
    await assertRejects(
      () => runServe(cast, log),
      ServeOptionsError,
      "kvReplicas: 2 is not 1 or 3",
    );
  } finally {
    blocker.close();
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("runServe refuses a route CA that is the data-plane CA under another path, and releases the data dir", async () => {
  const data = await makeTestPki();
  const routes = await makeRoutePki(1);
  const dataDir = await Deno.makeTempDir({ prefix: "unibus-route-ca-" });
  const blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { log } = recordingLogger();
  try {
    const copy = `${data.dir}/copy-of-ca.crt`;
    await Deno.copyFile(data.caCert, copy);
    const options = clusterNode(dataDir, (blocker.addr as Deno.NetAddr).port);
    options.calloutIssuerFile = `${dataDir}/issuer.nk`;
    options.tls = { certFile: data.serverCert, keyFile: data.serverKey, caFile: data.caCert };
    options.cluster = {
      ...options.cluster!,
      routeTls: { certFile: routes.nodes[0].cert, keyFile: routes.nodes[0].key, caFile: copy },
    };
    await assertRejects(
      () => runServe(options, log),
      RouteCaError,
      "--route-tls-ca is the data-plane CA (--tls-ca)",
    );
    const locked = await Deno.stat(`${dataDir}/serve.pid`).then(() => true, () => false);
    assert(!locked, "the refused start kept the data dir's lock");
  } finally {
    blocker.close();
    await Deno.remove(dataDir, { recursive: true });
    await data.cleanup();
    await routes.cleanup();
  }
});
