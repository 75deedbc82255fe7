/**
 * `GET /healthz`: liveness plus the node's security posture, so a monitor can
 * flag a node that is not what the operator thinks it is (seed 000: every
 * node publishes its posture).
 *
 * @module
 */

import type { DataPlaneState } from "../../lib/nats/internal_connection.ts";
import { VERSION } from "../../lib/version.ts";
import { json, type Route } from "./app.ts";

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
 * not (a load balancer must stop sending clients to a node without NATS).
 *
 * @example
 * ```ts
 * const route = healthRoute({ posture, dataPlane: () => conn.state() });
 * ```
 */
export function healthRoute(
  deps: { posture: Posture; dataPlane: () => DataPlaneState },
): Route {
  return {
    method: "GET",
    path: "/healthz",
    public: true,
    handler: () => {
      const dataPlane = deps.dataPlane();
      const ok = dataPlane.connected;
      return json(ok ? 200 : 503, {
        status: ok ? "ok" : "unavailable",
        version: VERSION,
        posture: deps.posture,
        dataPlane,
      }, { "cache-control": "no-store" });
    },
  };
}
