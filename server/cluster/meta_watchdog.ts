/**
 * A clustered node left out of the JetStream meta group asks to be let in by
 * restarting its nats-server.
 *
 * nats-server 2.10.27, started on three nodes at once, now and then forms its
 * meta group with two of them: during the cold boot it shrinks the expected
 * group size when it counts a peer whose JetStream it has not heard of yet,
 * and the leader of the group of two then never adds the third node, although
 * that node follows it. The group never heals by itself, and no R3 stream
 * (every control-plane bucket) can be placed: the cluster never becomes
 * ready. Measured: restarting the left-out node's nats-server makes the
 * leader add it (a new server it hears from), and the group is whole within
 * seconds; so the node that finds itself outside a short group does exactly
 * that, after the state has held for a while (a node being added right now
 * is outside for a moment), and not again for minutes.
 *
 * It watches a cold boot only: once the node is in a group of the
 * configured size it stops and closes its connection (nats-server then adds
 * and removes peers itself).
 *
 * Only the left-out node acts, and only on a group smaller than the
 * configured cluster: a node that is down does not shrink the group, so this
 * never fires on a healthy cluster missing a node. A node that leads a group
 * of its own (two groups) is not restarted: its stored group would come back
 * with it; that is said once, for the operator.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { type NativeNkeyPair, nkeyAuthenticatorFor } from "../../lib/auth/nkey.ts";
import type { Logger } from "../../lib/log.ts";
import { connectInternal } from "../../lib/nats/internal_connection.ts";
import type { Lifecycle } from "../lifecycle.ts";
import { askEveryServer } from "../nats/every_server.ts";
import type { ManagedNatsServer } from "../nats/managed_server.ts";

/** One server's view of the meta group (its `JSZ` `meta_cluster`). */
export interface MetaView {
  server: string;
  leader: string | null;
  clusterSize: number | null;
  /** The leader's followers; other servers list none. */
  replicas: string[];
}

/** What {@linkcode metaGroupVerdict} found for this node. */
export type MetaVerdict =
  | { kind: "in" }
  | { kind: "left-out"; leader: string; size: number; members: string[] }
  | { kind: "split"; leaders: string[] };

/**
 * Whether `node` is outside a meta group smaller than `configured`, from
 * every server's view: "in" also while there is no leader yet or the group
 * is full-size.
 *
 * @example
 * ```ts
 * metaGroupVerdict("n3", 3, [
 *   { server: "n1", leader: "n1", clusterSize: 2, replicas: ["n2"] },
 *   { server: "n3", leader: "n1", clusterSize: 2, replicas: [] },
 * ]); // { kind: "left-out", leader: "n1", size: 2, members: ["n1", "n2"] }
 * ```
 */
export function metaGroupVerdict(node: string, configured: number, views: MetaView[]): MetaVerdict {
  const leaders = views.filter((v) => v.leader !== null && v.leader === v.server);
  if (leaders.length === 0) return { kind: "in" };
  const main =
    [...leaders].sort((a, b) =>
      b.replicas.length - a.replicas.length || (b.clusterSize ?? 0) - (a.clusterSize ?? 0)
    )[0];
  if (main.clusterSize === null || main.clusterSize >= configured) return { kind: "in" };
  const members = [main.server, ...main.replicas];
  if (members.includes(node)) return { kind: "in" };
  if (leaders.some((l) => l.server === node)) {
    return { kind: "split", leaders: leaders.map((l) => l.server) };
  }
  return { kind: "left-out", leader: main.server, size: main.clusterSize, members };
}

/**
 * Whether `node` is in a meta group of the configured size: the end of a
 * cold boot, after which nats-server adds and removes peers itself and a
 * short group cannot form any more.
 *
 * @example
 * ```ts
 * metaGroupWhole("n1", 3, [{ server: "n2", leader: "n2", clusterSize: 3, replicas: ["n1", "n3"] }]); // true
 * ```
 */
export function metaGroupWhole(node: string, configured: number, views: MetaView[]): boolean {
  return views.some((v) =>
    v.leader === v.server && (v.clusterSize ?? 0) >= configured &&
    (v.server === node || v.replicas.includes(node))
  );
}

/** Every server's meta group view, from its answer to `$SYS.REQ.SERVER.PING.JSZ`. */
async function metaViews(sys: NatsConnection): Promise<MetaView[]> {
  const answers = await askEveryServer<{
    server?: { name?: string };
    data?: {
      meta_cluster?: { leader?: string; cluster_size?: number; replicas?: { name: string }[] };
    };
  }>(sys, "JSZ");
  const views: MetaView[] = [];
  for (const a of answers) {
    const meta = a.data?.meta_cluster;
    if (!a.server?.name || !meta) continue;
    views.push({
      server: a.server.name,
      leader: meta.leader ?? null,
      clusterSize: meta.cluster_size ?? null,
      replicas: (meta.replicas ?? []).map((x) => x.name),
    });
  }
  return views;
}

/** What the watchdog needs. */
export interface MetaWatchdogOptions {
  /** A system-account connection to this node's nats-server. */
  sys: NatsConnection;
  /** This node's server name. */
  node: string;
  /** Members the cluster is configured with. */
  clusterSize: number;
  /** Restarts this node's nats-server. */
  restart: (reason: string) => Promise<void>;
  log: Logger;
  intervalMs?: number;
  /** How long the node must be outside before it restarts. */
  settleMs?: number;
  /** Least time between two restarts. */
  minGapMs?: number;
  /** Restarts at most, over the node's life. */
  maxRestarts?: number;
  /** Called once this node is in a whole group; the watchdog stops then. */
  onWhole?: () => void;
}

/**
 * Starts watching; `stop()` ends it (waiting for a poll under way).
 *
 * @example
 * ```ts
 * const dog = startMetaWatchdog({ sys, node: "n3", clusterSize: 3, restart: (r) => nats.restart(r), log });
 * await dog.stop();
 * ```
 */
export function startMetaWatchdog(opts: MetaWatchdogOptions): { stop(): Promise<void> } {
  const interval = opts.intervalMs ?? 3000;
  const settle = opts.settleMs ?? 10_000;
  const minGap = opts.minGapMs ?? 120_000;
  const maxRestarts = opts.maxRestarts ?? 5;
  let outSince: number | null = null;
  let lastRestart = -Infinity;
  let restarts = 0;
  let saidSplit = false;
  let saidGiveUp = false;
  let running = true;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const check = async () => {
    let verdict: MetaVerdict;
    try {
      const views = await metaViews(opts.sys);
      // Once whole, a short group can only come from a cold boot again: no
      // more asking every server every few seconds for the node's life.
      if (metaGroupWhole(opts.node, opts.clusterSize, views)) {
        running = false;
        opts.onWhole?.();
        return;
      }
      verdict = metaGroupVerdict(opts.node, opts.clusterSize, views);
    } catch {
      return; // nats-server restarting or unreachable: asked again next time
    }
    if (verdict.kind === "split") {
      if (!saidSplit) {
        opts.log.error("two JetStream meta groups; this node leads one of its own", {
          leaders: verdict.leaders,
        });
      }
      saidSplit = true;
      return;
    }
    if (verdict.kind === "in") {
      outSince = null;
      return;
    }
    const now = Date.now();
    outSince ??= now;
    if (now - outSince < settle || now - lastRestart < minGap) return;
    if (restarts >= maxRestarts) {
      if (!saidGiveUp) {
        opts.log.error("still left out of the JetStream meta group; not restarting again", {
          restarts,
          leader: verdict.leader,
          members: verdict.members,
        });
      }
      saidGiveUp = true;
      return;
    }
    restarts++;
    lastRestart = now;
    outSince = null;
    opts.log.warn(
      "left out of the JetStream meta group; restarting nats-server so its leader adds this node",
      { leader: verdict.leader, size: verdict.size, members: verdict.members, restarts },
    );
    await opts.restart(
      `left out of the JetStream meta group (formed with ${verdict.size} of ${opts.clusterSize})`,
    );
  };

  let current: Promise<void> = Promise.resolve();
  const schedule = () => {
    timer = setTimeout(() => {
      if (!running) return;
      current = check().finally(() => running && schedule());
    }, interval);
  };
  schedule();
  return {
    async stop() {
      running = false;
      clearTimeout(timer);
      await current;
    },
  };
}

/**
 * The watchdog of a clustered node with a managed nats-server: its own
 * system-account connection (the enforcement stage's comes later, after the
 * buckets, which a short group keeps from opening), recorded in `life`.
 *
 * @example
 * ```ts
 * await watchMetaGroup({ natsUrl, systemUser, caFile: null, node: "n1", clusterSize: 3, nats, log }, life);
 * ```
 */
export async function watchMetaGroup(
  opts: {
    natsUrl: string;
    systemUser: NativeNkeyPair;
    caFile: string | null;
    node: string;
    clusterSize: number;
    nats: ManagedNatsServer;
    log: Logger;
  },
  life: Lifecycle,
): Promise<void> {
  const sys = await connectInternal({
    servers: [opts.natsUrl],
    name: `unibus-serve-${opts.node}-meta`,
    authenticator: nkeyAuthenticatorFor(opts.systemUser),
    caFile: opts.caFile ?? undefined,
    jetstream: false,
    log: opts.log.child("nats-sys"),
  });
  life.started("meta group connection", () => sys.close());
  const dog = startMetaWatchdog({
    sys: sys.nc,
    node: opts.node,
    clusterSize: opts.clusterSize,
    restart: (reason) => opts.nats.restart(reason),
    log: opts.log,
    onWhole: () => void sys.close(),
  });
  life.started("meta group watchdog", () => dog.stop());
}
