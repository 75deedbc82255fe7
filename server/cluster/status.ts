/**
 * What a clustered node knows about its cluster, for `/healthz` and
 * `/metrics`: its routes (from its own nats-server, `$SYS.REQ.SERVER.<id>.ROUTEZ`),
 * the JetStream meta group and its leader (`…JSZ`), and every peer's posture
 * as the peers publish it.
 *
 * Why the system account and not the monitoring endpoint: the endpoint is
 * closed by default (it would expose routes and subjects) and has no auth;
 * serve's system user already
 * has the server's own view, addressed to this server by id.
 *
 * Posture gossip: each node publishes what it enforces on
 * {@linkcode POSTURE_SUBJECT} over its internal connection. Subjects under
 * `_UNIBUS.` cannot be a room (rooms refuse `_` subjects) and are outside
 * every bus user's ACL, so only the nodes' internal identities publish there.
 *
 * @module
 */

import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Logger } from "../../lib/log.ts";
import { VERSION } from "../../lib/version.ts";

/** Where nodes publish their posture. */
export const POSTURE_SUBJECT = "_UNIBUS.cluster.posture";

/**
 * The posture message's format. Readers take the fields they know and
 * ignore the rest, so a newer node may add fields without a new number; one
 * that changes what a known field means bumps it, and an older reader then
 * keeps the peer's posture unknown ("posture unknown" on /healthz) rather
 * than misread it. A message without `v` is format 1.
 */
export const POSTURE_FORMAT = 1;

/** A node's posture, as reported. */
export interface NodePosture {
  auth: string;
  acl: boolean;
  tls: boolean;
  store: string;
  replicas: number;
}

/** One peer as this node sees it. */
export interface PeerStatus {
  name: string;
  /** A route to it is established right now. */
  route: "up" | "down";
  /** Its JetStream meta-group replica is current (null: not in the meta group). */
  current: boolean | null;
  posture: NodePosture | null;
  /** Seconds since its last posture message (null: never heard). */
  postureAgeS: number | null;
  /** Why its posture is not enforce + ACL + TLS (or not known). Empty: fine. */
  flags: string[];
  /** The unibus version it runs, as its posture message says (null: never heard, or older). */
  version: string | null;
}

/** One control-plane stream (a KV bucket or the blob object store) as its leader reports it. */
export interface StreamReplication {
  /** The JetStream stream: `KV_UNIBUS_users`, …, `OBJ_UNIBUS_blobs`. */
  stream: string;
  /** Configured replicas (1 or 3). */
  replicas: number;
  /** The node that leads the stream's RAFT group, or null (no writes possible). */
  leader: string | null;
  /** Followers that are current. */
  current: string[];
  /** Followers that are behind or offline. */
  lagged: string[];
  /** Why it could not be read (null: read fine). */
  error: string | null;
}

/** The cluster part of `/healthz`. */
export interface ClusterStatus {
  name: string;
  node: string;
  /** This node's posture flags (same rule as for peers). */
  flags: string[];
  peers: PeerStatus[];
  metaLeader: string | null;
  /** The meta group's configured size. */
  clusterSize: number | null;
  /** Members this node is configured with (its routes, itself included). */
  configuredSize: number | null;
  /**
   * Why this node cannot serve (then `/healthz` is 503): no meta leader, a
   * meta group formed with fewer members than configured (such a group never
   * grows by itself), a control-plane stream without a leader.
   */
  problems: string[];
  /** What is degraded while a quorum serves (`/healthz` stays 200): a peer down or behind. */
  warnings: string[];
  /** A meta leader exists: JetStream (and the KV control plane) can make progress. */
  quorum: boolean;
  /** Each control-plane stream's leader and followers (empty when none is watched). */
  streams: StreamReplication[];
  /**
   * Every control-plane stream has a leader and all of its configured
   * replicas current: the control plane survives the loss of any one node.
   */
  replicasCurrent: boolean;
  /** ms since the last successful poll; large means the status is stale. */
  ageMs: number;
  error: string | null;
}

/**
 * What is wrong with a posture: anything but enforce + ACL + TLS, the posture
 * every production node must have.
 *
 * @example
 * ```ts
 * postureFlags({ auth: "enforce", acl: true, tls: false, store: "kv", replicas: 3 }); // ["no TLS"]
 * ```
 */
export function postureFlags(p: NodePosture | null): string[] {
  if (p === null) return ["posture unknown"];
  const flags = [];
  if (p.auth !== "enforce") flags.push(`auth ${p.auth}`);
  if (!p.acl) flags.push("no ACL");
  if (!p.tls) flags.push("no TLS");
  return flags;
}

interface Jsz {
  meta_cluster?: {
    name?: string;
    leader?: string;
    cluster_size?: number;
    replicas?: Array<{ name: string; current?: boolean; offline?: boolean }>;
  };
}
interface StreamInfoReply {
  error?: { description?: string };
  config?: { num_replicas?: number };
  cluster?: {
    leader?: string;
    replicas?: Array<{ name: string; current?: boolean; offline?: boolean }>;
  };
}
interface Routez {
  routes?: Array<{ remote_name?: string; remote_id?: string }>;
}

// The peers a ROUTEZ reply names (by server name, else id).
function routeNames(r: Routez): Set<string> {
  return new Set((r.routes ?? []).map((x) => x.remote_name ?? x.remote_id ?? ""));
}

/** Options for {@linkcode startClusterMonitor}. */
export interface ClusterMonitorOptions {
  clusterName: string;
  node: string;
  posture: NodePosture;
  /** serve's system-account connection. */
  sys: NatsConnection;
  /** serve's internal app-account connection (posture gossip). */
  app: NatsConnection;
  log: Logger;
  intervalMs?: number;
  /** The control-plane streams whose replication `/healthz` reports (read over `app`). */
  streams?: string[];
  /** Nodes in the cluster (this one and its routes), for {@linkcode ClusterMonitor.majorityAlive}. */
  clusterSize?: number;
}

/** A running cluster monitor. */
export interface ClusterMonitor {
  /** The latest view; `quorum` is false when it is older than three intervals. */
  status(): ClusterStatus;
  /**
   * This node and the peers that have a route to this server right now
   * (asked of the server at the moment of the call, not from the last poll:
   * a killed peer's route is gone at once) AND were heard from within three
   * intervals (posture gossip: a host that went dark without closing its
   * sockets stops counting within seconds) make a majority of `clusterSize`.
   */
  majorityAlive(): Promise<boolean>;
  /**
   * The cluster's nodes this one has no route to right now (asked of the
   * server at the call, like {@linkcode majorityAlive}), by name, and how
   * many configured nodes it has never heard of at all: what a write that
   * needs every node (a new R3 stream, in nats-server 2.10) waits for.
   * Empty and 0: every node is there.
   */
  missingPeers(): Promise<MissingPeers>;
  stop(): Promise<void>;
}

/** What {@linkcode ClusterMonitor.missingPeers} reports. */
export interface MissingPeers {
  /** Known peers without a route to this node, sorted. */
  names: string[];
  /** Configured nodes never seen (no route, no meta-group entry, no posture). */
  unnamed: number;
}

/**
 * One stream's replication as its leader reports it. Stream info goes to the
 * stream's leader through the JetStream API; only the internal identity may
 * ask (bus users' ACLs have no `$JS.API`).
 */
async function streamReplication(
  app: NatsConnection,
  stream: string,
  timeout: number,
): Promise<StreamReplication> {
  try {
    const res = await app.request(`$JS.API.STREAM.INFO.${stream}`, "", { timeout });
    const body = res.json<StreamInfoReply>();
    if (body.error) throw new Error(body.error.description ?? "stream info refused");
    const followers = body.cluster?.replicas ?? [];
    const ok = (r: { current?: boolean; offline?: boolean }) =>
      r.current === true && r.offline !== true;
    return {
      stream,
      replicas: body.config?.num_replicas ?? 1,
      leader: body.cluster?.leader ?? null,
      current: followers.filter(ok).map((r) => r.name).sort(),
      lagged: followers.filter((r) => !ok(r)).map((r) => r.name).sort(),
      error: null,
    };
  } catch (err) {
    return {
      stream,
      replicas: 0,
      leader: null,
      current: [],
      lagged: [],
      error: (err as Error).message,
    };
  }
}

/** The cluster as this node sees it from its last poll (see {@linkcode ClusterStatus}). */
function clusterStatus(
  opts: ClusterMonitorOptions,
  interval: number,
  seen: {
    routez: Routez;
    jsz: Jsz;
    streams: StreamReplication[];
    polledAt: number;
    error: string | null;
    postures: Map<string, { posture: NodePosture; version: string | null; at: number }>;
  },
): ClusterStatus {
  const { routez, jsz, streams, polledAt, error, postures } = seen;
  const now = Date.now();
  const ageMs = polledAt === 0 ? Infinity : now - polledAt;
  const fresh = ageMs <= 3 * interval;
  const meta = jsz.meta_cluster ?? {};
  const routed = routeNames(routez);
  const names = new Set<string>([
    ...routed,
    ...(meta.replicas ?? []).map((r) => r.name),
    ...postures.keys(),
  ]);
  names.delete(opts.node);
  names.delete("");
  const peers = [...names].sort().map((name): PeerStatus => {
    const replica = (meta.replicas ?? []).find((r) => r.name === name);
    const p = postures.get(name);
    return {
      name,
      route: fresh && routed.has(name) ? "up" : "down",
      current: replica ? replica.current === true && replica.offline !== true : null,
      posture: p?.posture ?? null,
      postureAgeS: p ? Math.round((now - p.at) / 1000) : null,
      flags: postureFlags(p?.posture ?? null),
      version: p?.version ?? null,
    };
  });
  const metaLeader = fresh && meta.leader ? meta.leader : null;
  const shown = fresh ? streams : [];
  const problems: string[] = [];
  if (metaLeader === null) problems.push("no JetStream meta leader");
  if (
    fresh && meta.cluster_size !== undefined && opts.clusterSize !== undefined &&
    meta.cluster_size < opts.clusterSize
  ) {
    problems.push(
      `the JetStream meta group was formed with ${meta.cluster_size} of ${opts.clusterSize} ` +
        "members and will not grow by itself: stop every node, remove each data dir's " +
        "jetstream/SYS/_js_/_meta_ directory, start all nodes",
    );
  }
  for (const st of shown) if (st.leader === null) problems.push(`${st.stream} has no leader`);
  const warnings = peers.flatMap((p) =>
    p.route === "down"
      ? [`peer ${p.name} is down`]
      : p.current === false
      ? [`peer ${p.name} is not current`]
      : []
  );
  return {
    name: opts.clusterName,
    node: opts.node,
    flags: postureFlags(opts.posture),
    peers,
    metaLeader,
    clusterSize: meta.cluster_size ?? null,
    configuredSize: opts.clusterSize ?? null,
    problems,
    warnings,
    quorum: metaLeader !== null,
    streams: shown,
    replicasCurrent: fresh && streams.length === (opts.streams ?? []).length &&
      streams.every((st) =>
        st.error === null && st.leader !== null && st.current.length === st.replicas - 1
      ),
    ageMs: Number.isFinite(ageMs) ? ageMs : -1,
    error: fresh ? error : error ?? "status is stale",
  };
}

/**
 * Polls the cluster state and gossips this node's posture every `intervalMs`.
 *
 * @example
 * ```ts
 * const monitor = startClusterMonitor({ clusterName: "unibus", node: "n1", posture, sys, app, log });
 * monitor.status().metaLeader; // "n2"
 * ```
 */
export function startClusterMonitor(opts: ClusterMonitorOptions): ClusterMonitor {
  const interval = opts.intervalMs ?? 1000;
  const postures = new Map<string, { posture: NodePosture; version: string | null; at: number }>();
  let routez: Routez = {};
  let jsz: Jsz = {};
  let streams: StreamReplication[] = [];
  let polledAt = 0;
  let error: string | null = "not polled yet";

  const sub: Subscription = opts.app.subscribe(POSTURE_SUBJECT, {
    callback: (_err, msg) => {
      try {
        const m = msg.json<
          { v?: unknown; node?: string; version?: unknown; posture?: NodePosture }
        >();
        if ((m.v ?? 1) !== POSTURE_FORMAT) return;
        if (typeof m.node === "string" && m.posture && m.node !== opts.node) {
          const version = typeof m.version === "string" ? m.version : null;
          postures.set(m.node, { posture: m.posture, version, at: Date.now() });
        }
      } catch { /* not a posture message */ }
    },
  });

  const ask = async <T>(what: string, timeout = Math.max(500, interval)): Promise<T> => {
    const id = opts.sys.info?.server_id;
    if (!id) throw new Error("system connection has no server");
    const res = await opts.sys.request(`$SYS.REQ.SERVER.${id}.${what}`, "{}", { timeout });
    const body = res.json<{ data?: T; error?: { description?: string } }>();
    if (body.error) throw new Error(body.error.description ?? `${what} refused`);
    return body.data ?? ({} as T);
  };

  const streamInfo = (stream: string) =>
    streamReplication(opts.app, stream, Math.max(500, interval));

  const poll = async () => {
    try {
      opts.app.publish(
        POSTURE_SUBJECT,
        JSON.stringify({
          v: POSTURE_FORMAT,
          node: opts.node,
          version: VERSION,
          posture: opts.posture,
        }),
      );
      [routez, jsz, streams] = await Promise.all([
        ask<Routez>("ROUTEZ"),
        ask<Jsz>("JSZ"),
        Promise.all((opts.streams ?? []).map(streamInfo)),
      ]);
      polledAt = Date.now();
      error = null;
    } catch (err) {
      error = (err as Error).message;
    }
  };

  let running = true;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let current: Promise<void> = poll();
  const schedule = () => {
    timer = setTimeout(() => {
      if (!running) return;
      current = poll().then(report).finally(() => running && schedule());
    }, interval);
  };
  current.finally(() => running && schedule());

  const status = (): ClusterStatus =>
    clusterStatus(opts, interval, { routez, jsz, streams, polledAt, error, postures });

  // Each problem and warning is logged once when it appears and once when it
  // clears, not at every poll.
  let reported = new Set<string>();
  const report = () => {
    if (polledAt === 0) return;
    const st = status();
    const now = new Set([...st.problems, ...st.warnings]);
    for (const x of now) if (!reported.has(x)) opts.log.warn("cluster: " + x);
    for (const x of reported) if (!now.has(x)) opts.log.info("cluster: resolved: " + x);
    reported = now;
  };

  return {
    status,
    async majorityAlive() {
      const now = Date.now();
      const heard = [...postures].filter(([, p]) => now - p.at <= 3 * interval).map(([n]) => n);
      let routed: Set<string>;
      try {
        routed = routeNames(await ask<Routez>("ROUTEZ", 250));
      } catch {
        return false; // cannot tell: fail closed
      }
      const alive = 1 + heard.filter((n) => routed.has(n)).length;
      const size = opts.clusterSize ?? jsz.meta_cluster?.cluster_size ?? 3;
      return alive > size / 2;
    },
    async missingPeers() {
      let routed: Set<string>;
      try {
        routed = routeNames(await ask<Routez>("ROUTEZ", 250));
      } catch {
        // The server did not answer in time: the last poll's view.
        routed = routeNames(routez);
      }
      const known = new Set<string>([
        ...routed,
        ...routeNames(routez),
        ...(jsz.meta_cluster?.replicas ?? []).map((r) => r.name),
        ...postures.keys(),
      ]);
      known.delete(opts.node);
      known.delete("");
      const names = [...known].filter((n) => !routed.has(n)).sort();
      const size = opts.clusterSize ?? jsz.meta_cluster?.cluster_size ?? 1;
      return { names, unnamed: Math.max(0, size - 1 - known.size) };
    },
    async stop() {
      running = false;
      clearTimeout(timer);
      await current.catch(() => {});
      sub.unsubscribe();
    },
  };
}
