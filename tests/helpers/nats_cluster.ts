/**
 * A cluster of real nats-server processes configured exactly as `serve`
 * configures its child (server/nats/config.ts, enforce mode, one shared
 * callout issuer, route secret, mutual route TLS), for the cluster tests that
 * do not need the whole serve: routes, the meta leader, cross-node callout.
 *
 * @module
 */

import { metaGroupVerdict, type MetaView } from "../../server/cluster/meta_watchdog.ts";
import { allRoutes } from "../../server/cluster/options.ts";
import { NativeNkeyPair, nkeyAuthenticatorFor, Prefix } from "../../lib/auth/nkey.ts";
import { createLogger } from "../../lib/log.ts";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { resolveNatsServerBin } from "../../server/nats/binary.ts";
import { type NatsClusterConfig, renderNatsConfig } from "../../server/nats/config.ts";
import { ManagedNatsServer } from "../../server/nats/managed_server.ts";
import { freePort } from "./ports.ts";
import { makeRoutePki, type RoutePki } from "./tls.ts";
import { waitFor } from "./wait.ts";

/** One node of the test cluster. */
export interface TestNatsNode {
  name: string;
  clientPort: number;
  clusterPort: number;
  monitorPort: number;
  configPath: string;
  server: ManagedNatsServer;
  internal: NativeNkeyPair;
  system: NativeNkeyPair;
  /** Every line the node's logger wrote (nats-server's output, wrapped). */
  logLines: string[];
  /** Starts it again after {@linkcode TestNatsNode.server} was stopped or killed. */
  restart(): Promise<void>;
}

/** A running test cluster. */
export interface TestNatsCluster {
  nodes: TestNatsNode[];
  issuer: NativeNkeyPair;
  pass: string;
  routePki: RoutePki | null;
  dir: string;
  /** A connection as node `i`'s internal (app account) or system user. */
  connectAs(i: number, who: "internal" | "system"): Promise<NatsConnection>;
  stop(): Promise<void>;
}

/**
 * Starts `count` clustered nats-servers on 127.0.0.1.
 *
 * @example
 * ```ts
 * const c = await startNatsCluster(3, { routeTls: true });
 * try { … } finally { await c.stop(); }
 * ```
 */
export async function startNatsCluster(
  count: number,
  options: NatsClusterOptions = {},
): Promise<TestNatsCluster> {
  // A port free when picked can be taken before nats-server binds it (an
  // outgoing connection's ephemeral port, seen on CI): start again on fresh
  // ports, as startServe and startNatsServer do. Any other failure is final.
  for (let attempt = 1;; attempt++) {
    try {
      return await startNatsClusterOnce(count, options);
    } catch (err) {
      if (attempt >= 3 || !/address already in use/i.test(String(err))) throw err;
    }
  }
}

/** Options of {@linkcode startNatsCluster}. */
interface NatsClusterOptions {
  routeTls?: boolean;
  pass?: string;
  wrongPassFor?: number;
  start?: number[];
}

async function startNatsClusterOnce(
  count: number,
  options: NatsClusterOptions,
): Promise<TestNatsCluster> {
  const bin = (await resolveNatsServerBin({ env: Deno.env.toObject() })).path;
  const dir = await Deno.makeTempDir({ prefix: "unibus-natscluster-" });
  const routePki = options.routeTls ? await makeRoutePki(count) : null;
  const issuer = NativeNkeyPair.generate(Prefix.Account);
  const pass = options.pass ?? `route-${crypto.randomUUID()}`;
  const clusterPorts = Array.from({ length: count }, () => freePort());
  const nodes: TestNatsNode[] = [];
  for (let i = 0; i < count; i++) {
    const name = `n${i + 1}`;
    const internal = NativeNkeyPair.generate(Prefix.User);
    const system = NativeNkeyPair.generate(Prefix.User);
    const clientPort = freePort();
    const monitorPort = freePort();
    const cluster: NatsClusterConfig = {
      name: "unibus-test",
      host: "127.0.0.1",
      port: clusterPorts[i],
      // Every member, itself included, as serve writes it (allRoutes).
      routes: allRoutes({
        host: "127.0.0.1",
        port: clusterPorts[i],
        routes: clusterPorts.filter((_, j) => j !== i).map((p) => `nats://127.0.0.1:${p}`),
      }),
      user: "unibus-cluster",
      pass: options.wrongPassFor === i ? `${pass}-wrong` : pass,
      tls: routePki
        ? {
          certFile: routePki.nodes[i].cert,
          keyFile: routePki.nodes[i].key,
          caFile: routePki.caCert,
        }
        : null,
    };
    const configPath = `${dir}/${name}.conf`;
    await Deno.writeTextFile(
      configPath,
      renderNatsConfig({
        serverName: name,
        host: "127.0.0.1",
        port: clientPort,
        jetStreamDir: `${dir}/${name}-js`,
        pidFile: `${dir}/${name}.pid`,
        debug: true,
        trace: false,
        monitorPort,
        auth: {
          mode: "enforce",
          calloutIssuer: issuer.getPublicKey(),
          internalUser: internal.getPublicKey(),
          systemUser: system.getPublicKey(),
        },
        tls: null,
        cluster,
      }),
      { mode: 0o600 },
    );
    const logLines: string[] = [];
    const makeServer = () =>
      new ManagedNatsServer({
        binary: bin,
        configPath,
        host: "127.0.0.1",
        port: clientPort,
        quiet: false,
        log: createLogger(`nats-${name}`, { level: "debug", sink: (l) => logLines.push(l) }),
      });
    const server = makeServer();
    const node: TestNatsNode = {
      name,
      clientPort,
      clusterPort: clusterPorts[i],
      monitorPort,
      configPath,
      server,
      internal,
      system,
      logLines,
      async restart() {
        node.server = makeServer();
        await node.server.start();
      },
    };
    nodes.push(node);
  }
  const started: TestNatsNode[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.server.stop().catch(() => {})));
    await routePki?.cleanup().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await Promise.all(
      (options.start ?? nodes.map((_, i) => i)).map(async (i) => {
        await nodes[i].server.start();
        started.push(nodes[i]);
      }),
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    nodes,
    issuer,
    pass,
    routePki,
    dir,
    connectAs(i, who) {
      const n = nodes[i];
      return connect({
        servers: [`nats://127.0.0.1:${n.clientPort}`],
        authenticator: nkeyAuthenticatorFor(who === "internal" ? n.internal : n.system),
        name: `test-${n.name}-${who}`,
        // Only ever this node: its users are in its own config only.
        ignoreClusterUpdates: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 100,
      });
    },
    stop,
  };
}

/**
 * True when the JetStream meta group has every node of `c`, its leader
 * reporting all the others current. nats-server 2.10.27 still, now and then,
 * forms a meta group of two out of three nodes started at once, even with
 * every member in every node's routes (its cold-boot "mixed mode" size
 * adjustment counts a peer whose JetStream it has not heard of yet); a test
 * that needs R3 waits for this rather than for any leader
 * ({@linkcode untilFullMetaGroup} heals a short group as serve does).
 *
 * @example
 * ```ts
 * await waitUntil("a meta group of all nodes", 30_000, () => fullMetaGroup(c));
 * ```
 */
export async function fullMetaGroup(c: TestNatsCluster): Promise<boolean> {
  for (const n of c.nodes) {
    const res = await fetch(`http://127.0.0.1:${n.monitorPort}/jsz`);
    const meta = (await res.json())?.meta_cluster;
    if (meta?.leader !== n.name) continue;
    const followers: Array<{ current?: boolean }> = meta.replicas ?? [];
    return meta.cluster_size === c.nodes.length &&
      followers.length === c.nodes.length - 1 && followers.every((f) => f.current === true);
  }
  return false;
}

/**
 * Waits until the meta group of `c` has every node, healing a short group
 * the way serve does (server/cluster/meta_watchdog.ts): a node left outside
 * it for `settleMs` has its nats-server restarted, once.
 *
 * @example
 * ```ts
 * await untilFullMetaGroup(c, 60_000);
 * ```
 */
export async function untilFullMetaGroup(
  c: TestNatsCluster,
  ms: number,
  settleMs = 10_000,
): Promise<void> {
  const outSince = new Map<string, number>();
  const restarted = new Set<string>();
  await waitUntil("a meta group of all nodes", ms, async () => {
    if (await fullMetaGroup(c)) return true;
    const views: MetaView[] = [];
    for (const n of c.nodes) {
      const meta = await fetch(`http://127.0.0.1:${n.monitorPort}/jsz`)
        .then((r) => r.json()).then((b) => b?.meta_cluster).catch(() => null);
      if (!meta) continue;
      views.push({
        server: n.name,
        leader: meta.leader ?? null,
        clusterSize: meta.cluster_size ?? null,
        replicas: (meta.replicas ?? []).map((r: { name: string }) => r.name),
      });
    }
    for (const n of c.nodes) {
      if (metaGroupVerdict(n.name, c.nodes.length, views).kind !== "left-out") {
        outSince.delete(n.name);
        continue;
      }
      const since = outSince.get(n.name) ?? Date.now();
      outSince.set(n.name, since);
      if (Date.now() - since >= settleMs && !restarted.has(n.name)) {
        restarted.add(n.name);
        await n.server.restart("left out of the JetStream meta group");
      }
    }
    return false;
  });
}

/**
 * Waits until `check` returns a value that is not null/false/undefined (0 and
 * "" count as values), or fails at the deadline: {@linkcode waitFor}, polled
 * every 100 ms, in the argument order the cluster tests use.
 *
 * @example
 * ```ts
 * const leader = await waitUntil("a meta leader", 30_000, () => monitor.status().metaLeader);
 * ```
 */
export async function waitUntil<T>(
  what: string,
  ms: number,
  check: () => T | null | false | undefined | Promise<T | null | false | undefined>,
): Promise<T> {
  const got = await waitFor(async () => {
    const v = await check();
    return v !== null && v !== false && v !== undefined ? { v } : null;
  }, { what, timeoutMs: ms, intervalMs: 100 });
  return got.v;
}
