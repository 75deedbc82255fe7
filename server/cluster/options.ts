/**
 * What a clustered `serve` runs with, as validated by
 * cli/serve_cluster.ts. The route secret is not read here if it lives in a
 * file: server/cluster/secrets.ts reads it at start.
 *
 * @module
 */

/** Where the route secret comes from. */
export type ClusterPassSource =
  | { kind: "file"; path: string }
  | { kind: "env"; value: string }
  | { kind: "flag"; value: string };

/** A validated cluster configuration. */
export interface ClusterOptions {
  name: string;
  host: string;
  port: number;
  /** Peer route URLs as given (bare, or with their own userinfo). */
  routes: string[];
  user: string;
  pass: ClusterPassSource;
  /** Mutual route TLS; the CA is the route CA, never the data-plane CA. */
  routeTls: { certFile: string; keyFile: string; caFile: string } | null;
  /** SIGTERM's lame duck (server/nats/config.ts LameDuckConfig); absent: {@linkcode DEFAULT_LAME_DUCK}. */
  lameDuck?: { durationS: number; graceS: number };
}

/**
 * The lame duck a clustered node takes on SIGTERM: nats-server 2.10's
 * shortest duration, and a grace long enough for a client to hear the notice
 * and move on its own (the TypeScript client reconnects at once) before
 * nats-server starts closing the rest. With few clients the whole of it
 * takes about the grace plus a second per remaining client, well within
 * the duration.
 */
export const DEFAULT_LAME_DUCK = { durationS: 30, graceS: 5 } as const;

/** The environment variable that may carry the route secret. */
export const CLUSTER_PASS_ENV = "UNIBUS_CLUSTER_PASS";
/** The default route port, the one the deploy scripts and firewall rules name. */
export const DEFAULT_CLUSTER_PORT = 6250;
/** The shortest route secret accepted. */
export const MIN_CLUSTER_PASS = 16;

/**
 * What is wrong with a route secret's shape, or null. Never quotes the secret.
 *
 * @example
 * ```ts
 * clusterPassProblem("short"); // "the route secret must be at least 16 characters …"
 * ```
 */
export function clusterPassProblem(pass: string): string | null {
  if (pass.length < MIN_CLUSTER_PASS) {
    return `the route secret must be at least ${MIN_CLUSTER_PASS} characters (e.g. openssl rand -hex 32)`;
  }
  // It is written into a quoted config string: refuse what could end or escape it.
  if (/[^\x21-\x7e]/.test(pass) || /["\\$]/.test(pass)) {
    return "the route secret must be printable ASCII without quotes, '\\', '$' or spaces";
  }
  return null;
}

/**
 * Every member's route, this node's own included, as the generated config
 * lists them. nats-server 2.10 sizes the JetStream meta group at its first
 * start by the number of routes it is configured with (at least two): with
 * only the two peers listed, two nodes that come up first can form a group
 * of two and keep it, and no stream of three replicas can ever be placed.
 * Listing all three makes the group wait for three. A route to itself is
 * recognised and ignored by nats-server.
 *
 * Operators may list the other nodes or all of them. A listed route is this
 * node's own when its port is the cluster port and its host is the cluster
 * host (or, when the node binds every address, one of `localAddresses`, the
 * machine's own); when none is, this node's route is added (its cluster
 * host, or loopback when it binds every address). Duplicates (same host and
 * port) are dropped, so the count is the number of members.
 *
 * @example
 * ```ts
 * allRoutes({ host: "10.0.0.1", port: 6250, routes: ["nats://10.0.0.2:6250", "nats://10.0.0.3:6250"] });
 * // ["nats://10.0.0.2:6250", "nats://10.0.0.3:6250", "nats://10.0.0.1:6250"]
 * ```
 */
export function allRoutes(
  c: Pick<ClusterOptions, "host" | "port" | "routes">,
  localAddresses: string[] = [],
): string[] {
  const hostPort = (r: string): [string, number] | null => {
    try {
      const u = new URL(r);
      return [u.hostname.replace(/^\[|\]$/g, ""), Number(u.port || DEFAULT_CLUSTER_PORT)];
    } catch {
      return null;
    }
  };
  const anyHost = c.host === "0.0.0.0" || c.host === "::" || c.host === "";
  const mine = new Set(anyHost ? ["127.0.0.1", "::1", "localhost", ...localAddresses] : [c.host]);
  const seen = new Set<string>();
  const out: string[] = [];
  let self = false;
  for (const r of c.routes) {
    const hp = hostPort(r);
    const key = hp ? hp.join(":") : r;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(r);
    if (hp && hp[1] === c.port && mine.has(hp[0])) self = true;
  }
  if (!self) {
    const host = anyHost ? "127.0.0.1" : c.host.includes(":") ? `[${c.host}]` : c.host;
    out.push(`nats://${host}:${c.port}`);
  }
  return out;
}
