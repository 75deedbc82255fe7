/**
 * A clustered node's route section of the nats-server configuration, made
 * from its validated cluster options at start: the route CA checked against
 * the data-plane CA by content, the route secret read from its source, and
 * every member's route listed.
 *
 * @module
 */

import type { Logger } from "../../lib/log.ts";
import { type NatsClusterConfig, redactRoute } from "../nats/config.ts";
import { allRoutes, type ClusterOptions } from "./options.ts";
import { assertSeparateRouteCa } from "./route_tls.ts";
import { resolveClusterPass } from "./secrets.ts";

/**
 * The route configuration for `cluster`. Throws when the route CA shares a
 * certificate with `dataCaFile` (route_tls.ts) or the secret cannot be read.
 *
 * @example
 * ```ts
 * const routes = await clusterRouteConfig(opts.cluster, opts.tls?.caFile ?? null, log);
 * renderNatsConfig({ …, cluster: routes });
 * ```
 */
export async function clusterRouteConfig(
  cluster: ClusterOptions,
  dataCaFile: string | null,
  log: Logger,
): Promise<NatsClusterConfig> {
  if (cluster.routeTls && dataCaFile) {
    await assertSeparateRouteCa(cluster.routeTls.caFile, dataCaFile);
  }
  const { pass, warning } = await resolveClusterPass(cluster.pass);
  if (warning) log.warn(warning);
  // Routes are logged without their userinfo, never with the secret.
  log.info("cluster", {
    name: cluster.name,
    listen: `${cluster.host}:${cluster.port}`,
    routes: cluster.routes.map(redactRoute),
    routeTls: cluster.routeTls !== null,
    secretFrom: cluster.pass.kind,
  });
  return {
    name: cluster.name,
    host: cluster.host,
    port: cluster.port,
    routes: allRoutes(cluster, localAddresses()),
    user: cluster.user,
    pass,
    tls: cluster.routeTls,
  };
}

/**
 * How many nodes the cluster has: this one and its distinct routes.
 *
 * @example
 * ```ts
 * clusterSize({ host: "127.0.0.1", port: 6250, routes: ["nats://127.0.0.1:6251", "nats://127.0.0.1:6252"] }); // 3
 * ```
 */
export function clusterSize(cluster: Pick<ClusterOptions, "host" | "port" | "routes">): number {
  return allRoutes(cluster, localAddresses()).length;
}

/** This machine's own addresses (to tell this node's route among the listed ones). */
function localAddresses(): string[] {
  try {
    return Deno.networkInterfaces().map((i) => i.address);
  } catch {
    return [];
  }
}
