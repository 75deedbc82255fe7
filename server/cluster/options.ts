/**
 * What a clustered `serve` runs with (issue 10), as validated by
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
}

/** The environment variable that may carry the route secret. */
export const CLUSTER_PASS_ENV = "UNIBUS_CLUSTER_PASS";
/** The default route port (seed 000). */
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
