/**
 * `GET /healthz`: liveness plus the node's security posture, so a monitor can
 * flag a node that is not what the operator thinks it is (a node started
 * without auth or TLS looks like any other until it says so).
 *
 * @module
 */

import type { DataPlaneState } from "../../lib/nats/internal_connection.ts";
import { VERSION } from "../../lib/version.ts";
import type { ClusterStatus } from "../cluster/status.ts";
import { json, type Route } from "./app.ts";
import type { ControlPlaneCheck } from "./control_plane_check.ts";

/** What the node enforces; reported verbatim. */
export interface Posture {
  auth: "off" | "enforce";
  acl: boolean;
  tls: boolean;
  store: "sqlite" | "kv";
  replicas: number;
}

/**
 * The `/healthz` route: 200 while the data plane is connected, 503 while it is
 * not (a load balancer must stop sending clients to a node without NATS). In
 * a cluster, also 503 while there is no JetStream meta leader: without one
 * the replicated control plane cannot commit, so a lone node of a three-node
 * cluster never reports healthy.
 *
 * @example
 * ```ts
 * const route = healthRoute({ posture, dataPlane: () => conn.state() });
 * ```
 */
export function healthRoute(
  deps: {
    posture: Posture;
    dataPlane: () => DataPlaneState;
    cluster?: () => ClusterStatus;
    /** The control plane's storage (buckets, object store, SQLite file): 503 naming what is missing. */
    controlPlane?: ControlPlaneCheck;
  },
): Route {
  return {
    method: "GET",
    path: "/healthz",
    public: true,
    handler: async () => {
      const dataPlane = deps.dataPlane();
      const cluster = deps.cluster?.();
      const controlPlane = deps.controlPlane ? await deps.controlPlane() : [];
      // No meta leader, a short meta group, a control-plane stream without a
      // leader: the node cannot take the control plane's writes (it would
      // answer 503 to clients), so it is not fit for them either. A peer down
      // while a quorum serves is a warning, still 200.
      const ok = dataPlane.connected && controlPlane.length === 0 &&
        (cluster === undefined || cluster.problems.length === 0);
      return json(ok ? 200 : 503, {
        status: ok ? "ok" : "unavailable",
        version: VERSION,
        posture: deps.posture,
        dataPlane,
        // Missing or unreadable buckets, object store or database file, named.
        controlPlane: { problems: controlPlane },
        ...(cluster ? { cluster } : {}),
      }, { "cache-control": "no-store" });
    },
  };
}
