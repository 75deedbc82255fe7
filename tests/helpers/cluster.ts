/**
 * Three `unibus serve` processes as one cluster on 127.0.0.1, for the phase 2
 * tests of issue 10 (they need `--store kv`). Each node gets exactly the
 * flags the issue lists, plus mutual route TLS from a route CA generated here
 * (separate from the data-plane CA, also generated here). Nodes can be
 * killed for real (`kill -9` of serve AND its nats-server) and restarted on
 * the same ports and data dir. `stop()` ends every process on success and
 * failure alike.
 *
 * @module
 */

import { isAlive } from "./ports.ts";
import { freePort } from "./ports.ts";
import type { Identity } from "../../lib/identity/identity.ts";
import {
  type CliRun,
  runUnibus,
  spawnUnibus,
  type UnibusProcess,
  userAddArgs,
} from "./serve_process.ts";
import { makeRoutePki, makeTestPki, type RoutePki, type TestPki } from "./tls.ts";
import { waitUntil } from "./nats_cluster.ts";
import { routeListenHost, type RouteProxies, startRouteProxies } from "./route_proxy.ts";

/** One node of the serve cluster. */
export interface ClusterNode {
  name: string;
  dataDir: string;
  internalIdFile: string;
  httpPort: number;
  natsPort: number;
  clusterPort: number;
  httpUrl: string;
  natsUrl: string;
  /** The running serve, or null while the node is down. */
  proc: UnibusProcess | null;
  /** Every process of every incarnation of this node (for argv/log checks). */
  history: UnibusProcess[];
}

/** A running three-node serve cluster. */
export interface ServeCluster {
  nodes: ClusterNode[];
  dir: string;
  /** The route secret (to check that it appears nowhere it must not). */
  pass: string;
  routePki: RoutePki;
  dataPki: TestPki;
  calloutIssuerFile: string;
  /** The route proxies, when started with `routeProxies` (to cut a node off). */
  proxies: RouteProxies | null;
  /** Starts node `i` (again), without waiting for it to be ready. */
  start(i: number): UnibusProcess;
  /** Waits for node `i`'s "unibus ready" line. */
  ready(i: number, ms?: number): Promise<void>;
  /** Waits until node `i`'s /healthz answers 200. */
  healthy(i: number, ms?: number): Promise<Record<string, unknown>>;
  /** GET /healthz of node `i`: status and body. */
  health(i: number): Promise<{ status: number; body: Record<string, unknown> }>;
  /** kill -9 of node `i`'s serve and its nats-server. */
  kill9(i: number): Promise<void>;
  /**
   * SIGTERM to node `i`'s serve (a clustered node takes its lame duck) and
   * its exit, within `ms` (else kill -9 and a throw).
   */
  sigterm(i: number, ms?: number): Promise<Deno.CommandStatus>;
  /** The pids of node `i`'s serve and nats-server (current incarnation). */
  pids(i: number): { serve: number | null; nats: number | null };
  stop(): Promise<void>;
}

/**
 * `serve` flags of one clustered node on 127.0.0.1: exactly the ones issue 10
 * lists for a cluster on one machine (route TLS comes on top, if wanted).
 *
 * @example
 * ```ts
 * spawnUnibus(clusterNodeArgs({ name: "n1", dataDir, internalIdFile, httpPort, natsPort, clusterPort, routes, passFile, calloutIssuerFile }));
 * ```
 */
export function clusterNodeArgs(
  n:
    & Pick<
      ClusterNode,
      "name" | "dataDir" | "internalIdFile" | "httpPort" | "natsPort" | "clusterPort"
    >
    & {
      routes: string[];
      passFile: string;
      calloutIssuerFile: string;
    },
): string[] {
  return [
    "serve",
    "--bus-auth",
    "enforce",
    "--store",
    "kv",
    "--kv-replicas",
    "3",
    "--server-name",
    n.name,
    "--data-dir",
    n.dataDir,
    "--internal-id-file",
    n.internalIdFile,
    "--http-addr",
    `127.0.0.1:${n.httpPort}`,
    "--nats-port",
    String(n.natsPort),
    "--cluster-name",
    "unibus-test",
    "--cluster-host",
    "127.0.0.1",
    "--cluster-port",
    String(n.clusterPort),
    "--routes",
    n.routes.join(","),
    "--cluster-user",
    "unibus-cluster",
    "--cluster-pass-file",
    n.passFile,
    "--callout-issuer-file",
    n.calloutIssuerFile,
  ];
}

/**
 * The KV target flags of node `i`: its own NATS and its own internal
 * identity (another node's nats-server does not know that identity).
 *
 * @example
 * ```ts
 * await runUnibus(["user", "list", ...kvAt(c, 1)]);
 * ```
 */
export function kvAt(c: ServeCluster, i: number): string[] {
  return [
    "--store",
    "kv",
    "--nats-url",
    c.nodes[i].natsUrl,
    "--internal-id-file",
    c.nodes[i].internalIdFile,
  ];
}

/**
 * `user add --store kv` of `id` through node `via`; throws unless it succeeds.
 *
 * @example
 * ```ts
 * await addKvUser(c, 0, generateIdentity("ada"), "admin");
 * ```
 */
export async function addKvUser(
  c: ServeCluster,
  via: number,
  id: Identity,
  role = "member",
): Promise<CliRun> {
  const r = await runUnibus([...userAddArgs(id, role), ...kvAt(c, via)]);
  if (r.code !== 0) {
    throw new Error(`user add ${id.handle} via ${c.nodes[via].name}: ${r.stderr}`);
  }
  return r;
}

function natsPidOf(p: UnibusProcess): number | null {
  const started = p.lines.filter((l) => l.msg === "nats-server started").at(-1);
  return started ? Number(started.pid) : null;
}

/**
 * Starts three nodes together (a lone node never becomes healthy: the meta
 * group needs two) and waits until all three are ready.
 *
 * @example
 * ```ts
 * const c = await startServeCluster();
 * try { await c.healthy(0); } finally { await c.stop(); }
 * ```
 */
export async function startServeCluster(
  options: ServeClusterOptions = {},
): Promise<ServeCluster> {
  // A port picked free can be taken (by another listener) before it is
  // bound: not the code under test, so a new cluster, at most three times.
  // A short JetStream meta group is the code's to heal (a left-out node
  // restarts its nats-server, server/cluster/meta_watchdog.ts): no retry.
  let portRaces = 0;
  for (;;) {
    try {
      return await startServeClusterOnce(options);
    } catch (err) {
      if (/address already in use/i.test(String(err)) && ++portRaces < 3) continue;
      throw err;
    }
  }
}

/** Options of {@linkcode startServeCluster}. */
interface ServeClusterOptions {
  extraArgs?: (i: number) => string[];
  readyMs?: number;
  /** Every route through a proxy of the test's that can cut a node off (route_proxy.ts). */
  routeProxies?: boolean;
  /** Node `i`'s data dir, when not one under the cluster's temp dir (emptied on each try). */
  dataDirOf?: (i: number) => string | undefined;
}

async function startServeClusterOnce(options: ServeClusterOptions): Promise<ServeCluster> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-cluster-" });
  const dataPki = await makeTestPki();
  const routePki = await makeRoutePki(3);
  const pass = crypto.randomUUID().replaceAll("-", "");
  const passFile = `${dir}/route.pass`;
  await Deno.writeTextFile(passFile, pass + "\n", { mode: 0o600 });
  await Deno.chmod(passFile, 0o600);
  const calloutIssuerFile = `${dir}/callout-issuer.nk`;
  const nodes: ClusterNode[] = [0, 1, 2].map((i) => {
    const httpPort = freePort();
    const natsPort = freePort();
    return {
      name: `n${i + 1}`,
      dataDir: options.dataDirOf?.(i) ?? `${dir}/n${i + 1}`,
      internalIdFile: `${dir}/n${i + 1}-internal.id`,
      httpPort,
      natsPort,
      clusterPort: freePort(),
      httpUrl: `http://127.0.0.1:${httpPort}`,
      natsUrl: `nats://127.0.0.1:${natsPort}`,
      proc: null,
      history: [],
    };
  });

  const proxies = options.routeProxies
    ? startRouteProxies(
      nodes.map((n) => n.clusterPort),
      () => [0, 1, 2].map((i) => cluster.pids(i).nats),
    )
    : null;
  const args = (i: number): string[] => {
    const n = nodes[i];
    const others = nodes.filter((_, j) => j !== i);
    const routed = clusterNodeArgs({
      ...n,
      routes: others.map((o) => `nats://127.0.0.1:${o.clusterPort}`),
      passFile,
      calloutIssuerFile,
    });
    // Behind a proxy, the node listens on an address of its own and peers
    // dial the proxy on 127.0.0.1 (route_proxy.ts).
    if (proxies) routed[routed.indexOf("--cluster-host") + 1] = routeListenHost(i);
    return [
      ...routed,
      "--route-tls-cert",
      routePki.nodes[i].cert,
      "--route-tls-key",
      routePki.nodes[i].key,
      "--route-tls-ca",
      routePki.caCert,
      ...(options.extraArgs?.(i) ?? []),
    ];
  };

  const killAll = async (p: UnibusProcess) => {
    const nats = natsPidOf(p);
    try {
      p.child.kill("SIGKILL");
    } catch { /* gone */ }
    if (nats !== null && isAlive(nats)) Deno.kill(nats, "SIGKILL");
    await p.finished;
  };

  const cluster: ServeCluster = {
    nodes,
    dir,
    pass,
    routePki,
    dataPki,
    calloutIssuerFile,
    proxies,
    start(i) {
      const p = spawnUnibus(args(i));
      nodes[i].proc = p;
      nodes[i].history.push(p);
      return p;
    },
    async ready(i, ms = options.readyMs ?? 60_000) {
      const p = nodes[i].proc;
      if (!p) throw new Error(`${nodes[i].name} is not running`);
      await p.waitFor((l) => l.msg === "unibus ready", ms);
    },
    async health(i) {
      const res = await fetch(`${nodes[i].httpUrl}/healthz`);
      return { status: res.status, body: await res.json() };
    },
    healthy(i, ms = 30_000) {
      return waitUntil(`${nodes[i].name} healthy`, ms, async () => {
        const h = await cluster.health(i);
        return h.status === 200 ? h.body : null;
      });
    },
    async kill9(i) {
      const p = nodes[i].proc;
      if (!p) return;
      nodes[i].proc = null;
      await killAll(p);
    },
    async sigterm(i, ms = 60_000) {
      const p = nodes[i].proc;
      if (!p) throw new Error(`${nodes[i].name} is not running`);
      p.child.kill("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const status = await Promise.race([
        p.finished,
        new Promise<null>((r) => timer = setTimeout(() => r(null), ms)),
      ]);
      clearTimeout(timer);
      nodes[i].proc = null;
      if (status === null) {
        await killAll(p);
        throw new Error(`${nodes[i].name} did not stop within ${ms} ms of SIGTERM`);
      }
      return status;
    },
    pids(i) {
      const p = nodes[i].proc;
      return { serve: p?.child.pid ?? null, nats: p ? natsPidOf(p) : null };
    },
    async stop() {
      await Promise.all(nodes.map(async (n) => {
        const p = n.proc;
        n.proc = null;
        if (!p) return;
        try {
          p.child.kill("SIGTERM");
        } catch { /* gone */ }
        // A ready node takes its lame duck on SIGTERM (seconds, while its
        // peers go too); a second SIGTERM cuts it short, which is all a
        // test's teardown needs.
        p.waitFor((l) => l.msg === "lame duck started", 5000).then(() => {
          try {
            p.child.kill("SIGTERM");
          } catch { /* gone */ }
        }, () => {});
        let timer: ReturnType<typeof setTimeout> | undefined;
        const done = await Promise.race([
          p.finished.then(() => true),
          new Promise<boolean>((r) => timer = setTimeout(() => r(false), 15_000)),
        ]);
        clearTimeout(timer);
        if (!done) await killAll(p);
        // Never leave a nats-server behind, whatever happened to serve.
        for (const h of n.history) {
          const nats = natsPidOf(h);
          if (nats !== null && isAlive(nats)) Deno.kill(nats, "SIGKILL");
        }
      }));
      await proxies?.close();
      await dataPki.cleanup().catch(() => {});
      await routePki.cleanup().catch(() => {});
      // A data dir given by the caller may be a mount point: its contents go,
      // the directory stays for the caller.
      for (const n of nodes) {
        try {
          for await (const e of Deno.readDir(n.dataDir)) {
            await Deno.remove(`${n.dataDir}/${e.name}`, { recursive: true }).catch(() => {});
          }
        } catch { /* never made */ }
      }
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };

  try {
    for (let i = 0; i < 3; i++) cluster.start(i);
    await Promise.all([0, 1, 2].map((i) => cluster.ready(i)));
  } catch (err) {
    // What each node said of its cluster when the start failed: a short meta
    // group, a peer missing, a bucket that could not be placed.
    const said = await Promise.all([0, 1, 2].map((i) =>
      cluster.health(i).then(
        (h) => `${nodes[i].name}: ${h.status} ${JSON.stringify(h.body.cluster ?? h.body)}`,
        (e) => `${nodes[i].name}: no /healthz (${(e as Error).message})`,
      )
    ));
    await cluster.stop();
    throw new Error(`${(err as Error).message}\n${said.join("\n").slice(0, 6000)}`);
  }
  return cluster;
}

/**
 * Every log line and argv of every process of the cluster that contains
 * `secret`: serve's stdout/stderr, nats-server's lines (forwarded by serve),
 * and /proc/<pid>/cmdline of the live serve and nats-server processes.
 *
 * @example
 * ```ts
 * assertEquals(await secretLeaks(c, c.pass), []);
 * ```
 */
export async function secretLeaks(c: ServeCluster, secret: string): Promise<string[]> {
  const leaks: string[] = [];
  for (const n of c.nodes) {
    for (const p of n.history) {
      for (const l of p.lines) {
        const text = JSON.stringify(l);
        if (text.includes(secret)) leaks.push(`${n.name} log: ${text}`);
      }
      if (p.stderr().includes(secret)) leaks.push(`${n.name} stderr`);
    }
    const { serve, nats } = c.pids(c.nodes.indexOf(n));
    for (const pid of [serve, nats]) {
      if (pid === null) continue;
      const argv = await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => "");
      if (argv.includes(secret)) leaks.push(`${n.name} argv of pid ${pid}`);
    }
  }
  return leaks;
}
