/**
 * serve's HTTP app: the middleware every request passes (access log,
 * metrics, signed-request check with the upload gate) and the route table
 * (metrics, healthz, the `/v1` API), assembled from the stages before it.
 *
 * @module
 */

import type { Logger } from "../../lib/log.ts";
import type { InternalConnection } from "../../lib/nats/internal_connection.ts";
import type { Store } from "../../lib/store/store.ts";
import type { ClusterMonitor } from "../cluster/status.ts";
import { controlPlaneStreams } from "../control_plane_store.ts";
import type { Metrics } from "../metrics.ts";
import type { ServeOptions } from "../options.ts";
import { accessLog, createApp } from "./app.ts";
import { kvControlPlaneCheck, sqliteControlPlaneCheck } from "./control_plane_check.ts";
import { healthRoute, type Posture } from "./health.ts";
import { requireSignedRequests } from "./request_auth.ts";
import { apiRoutes } from "./routes/mod.ts";

/** What the app serves from. */
export interface ControlPlaneAppDeps {
  store: Store;
  metrics: Metrics;
  posture: Posture;
  /** The control plane's connection (healthz: data plane state, KV buckets). */
  conn: InternalConnection;
  /** The rooms' connection (persisted rooms' streams). */
  roomsConn: InternalConnection;
  /** The users' connection (the server's notices). */
  usersConn: InternalConnection;
  /** A clustered node's monitor; null on a single node. */
  clusterMonitor: ClusterMonitor | null;
  /** Re-checks connected users after a membership change (enforce mode; else nothing). */
  recheck: (roomId?: string) => void;
  log: Logger;
}

/**
 * The request handler of serve's control plane.
 *
 * @example
 * ```ts
 * listener.serve(controlPlaneApp(opts, { store, metrics, posture, conn, roomsConn, usersConn, clusterMonitor: null, recheck: () => {}, log }));
 * ```
 */
export function controlPlaneApp(
  opts: ServeOptions,
  deps: ControlPlaneAppDeps,
): ReturnType<typeof createApp> {
  const { store, metrics, posture, clusterMonitor } = deps;
  return createApp({
    log: deps.log.child("http"),
    maxBodyBytes: opts.maxBodyBytes,
    middleware: [
      accessLog,
      metrics.http,
      requireSignedRequests({
        store,
        uploads: {
          perUser: opts.limits.uploadsPerUser,
          perSource: opts.limits.uploadsPerSource,
          total: opts.limits.uploadsTotal,
        },
      }),
    ],
    routes: [
      metrics.route,
      healthRoute({
        posture,
        dataPlane: () => deps.conn.state(),
        controlPlane: opts.store === "kv"
          ? kvControlPlaneCheck(deps.conn.nc, controlPlaneStreams())
          : sqliteControlPlaneCheck(store, opts.dbPath),
        cluster: clusterMonitor ? () => clusterMonitor.status() : undefined,
      }),
      ...apiRoutes({
        store,
        streamsNc: deps.roomsConn.nc,
        noticesNc: deps.usersConn.nc,
        recheck: deps.recheck,
        log: deps.log.child("api"),
        limits: opts.limits,
        streamReplicas: posture.replicas,
        // Replicated streams only: an R1 stream is placed on any live node.
        missingNodes: clusterMonitor && posture.replicas > 1
          ? () => clusterMonitor.missingPeers()
          : undefined,
      }),
    ],
  });
}
