/**
 * serve's enforcement stage (`--bus-auth enforce`): the system-account
 * connection, the cluster monitor on a clustered node, the auth callout that
 * admits logins, the session feed that hands a cluster's admissions to the
 * node holding the connection, and the enforcer that cuts what the store no
 * longer allows.
 *
 * @module
 */

import { nkeyAuthenticatorFor } from "../../lib/auth/nkey.ts";
import type { Logger } from "../../lib/log.ts";
import { connectInternal, type InternalConnection } from "../../lib/nats/internal_connection.ts";
import type { Store } from "../../lib/store/store.ts";
import { clusterSize } from "../cluster/routes.ts";
import { grantPublisher, startSessionFeed } from "../cluster/session_feed.ts";
import { type ClusterMonitor, startClusterMonitor } from "../cluster/status.ts";
import { controlPlaneStreams } from "../control_plane_store.ts";
import type { Posture } from "../http/health.ts";
import type { Lifecycle } from "../lifecycle.ts";
import type { Metrics } from "../metrics.ts";
import type { ServeOptions } from "../options.ts";
import { startAuthCallout } from "./callout.ts";
import { startEnforcer } from "./enforcer.ts";
import type { ServeIdentities } from "./identities.ts";
import { SessionRegistry } from "./sessions.ts";

/** What the enforcement stage needs from the stages before it. */
export interface EnforcementDeps {
  ids: ServeIdentities;
  natsUrl: string;
  /** The control plane's connection: the callout's subscription, grants, gossip. */
  conn: InternalConnection;
  /** The users' connection: refresh notices. */
  usersConn: InternalConnection;
  store: Store;
  metrics: Metrics;
  posture: Posture;
}

/** The running enforcement. */
export interface Enforcement {
  /** The admitted connections this node enforces. */
  sessions: SessionRegistry;
  /** A clustered node's view of its peers; null on a single node. */
  clusterMonitor: ClusterMonitor | null;
  /** Re-checks connected users now (of one room, or all). */
  recheck(roomId?: string): void;
}

/**
 * Starts enforcement and records each part in `life`. Resolves once the
 * callout's subscription has reached nats-server, so that the first clients
 * are answered rather than left to time out.
 *
 * @example
 * ```ts
 * const enforcement = await startEnforcement(opts, { ids, natsUrl, conn, usersConn, store, metrics, posture }, life, log);
 * enforcement.recheck("room-id");
 * ```
 */
export async function startEnforcement(
  opts: ServeOptions,
  deps: EnforcementDeps,
  life: Lifecycle,
  log: Logger,
): Promise<Enforcement> {
  const { conn, store, metrics } = deps;
  if (!deps.ids.issuer || !deps.ids.systemUser) {
    throw new Error("enforcement needs the callout issuer and the system user");
  }
  const sys = await connectInternal({
    servers: [deps.natsUrl],
    name: `unibus-serve-${opts.serverName}-sys`,
    authenticator: nkeyAuthenticatorFor(deps.ids.systemUser),
    caFile: opts.tls?.caFile,
    jetstream: false,
    log: log.child("nats-sys"),
  });
  life.started("system connection", () => sys.close());
  let clusterMonitor: ClusterMonitor | null = null;
  if (opts.cluster) {
    const monitor = startClusterMonitor({
      clusterName: opts.cluster.name,
      node: opts.serverName,
      posture: deps.posture,
      sys: sys.nc,
      app: conn.nc,
      log: log.child("cluster"),
      streams: controlPlaneStreams(),
      clusterSize: clusterSize(opts.cluster),
    });
    clusterMonitor = monitor;
    life.started("cluster monitor", () => monitor.stop());
  }
  const sessions = new SessionRegistry();
  const callout = startAuthCallout({
    nc: conn.nc,
    issuer: deps.ids.issuer,
    store,
    sessions,
    log: log.child("auth"),
    limits: opts.limits,
    // In a cluster this node may answer for another node's server: the
    // admission goes to the node that holds the connection.
    grant: opts.cluster ? grantPublisher(conn.nc) : undefined,
    onAnswer: (ms, allowed) => metrics.calloutAnswered(ms, allowed),
    // A login in a cluster also needs a live majority: a node that just lost
    // both peers must not admit from its own copy of the store alone.
    quorum: clusterMonitor ? () => clusterMonitor!.majorityAlive() : undefined,
  });
  life.started("auth callout", () => callout.stop());
  if (opts.cluster) {
    const feed = startSessionFeed({
      sys: sys.nc,
      app: conn.nc,
      sessions,
      log: log.child("sessions"),
    });
    life.started("session feed", () => feed.stop());
  }
  // The callout's subscription must reach the server before a client
  // connects, or the first clients time out instead of being answered.
  await conn.nc.flush();
  const enforcer = startEnforcer({
    sys: sys.nc,
    notices: deps.usersConn.nc,
    store,
    sessions,
    log: log.child("enforcer"),
    onKick: (reason) => metrics.kicked(reason),
  });
  life.started("enforcer", () => enforcer.stop());
  return { sessions, clusterMonitor, recheck: (roomId) => enforcer.recheckNow(roomId) };
}
