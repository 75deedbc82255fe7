/**
 * `serve`'s cluster flags: the route listener, the peers, the route secret's
 * source and route TLS, turned into {@linkcode ClusterOptions}. The posture a
 * clustered node must have (route TLS off loopback, the secret's shape,
 * enforce, KV, a shared issuer) is checked with the rest of serve's options
 * in server/options.ts. Kept apart from cli/serve.ts so that the single-node
 * flags and these evolve separately.
 *
 * @module
 */

import { parsePort } from "../lib/net/address.ts";
import {
  CLUSTER_PASS_ENV,
  type ClusterOptions,
  type ClusterPassSource,
  DEFAULT_CLUSTER_PORT,
  DEFAULT_LAME_DUCK,
} from "../server/cluster/options.ts";
import { MIN_LAME_DUCK_S } from "../server/nats/config.ts";
import { type OptionTable, UsageError } from "./args.ts";

/** The cluster rows of `serve`'s option table. */
export const CLUSTER_SERVE_OPTIONS: OptionTable = {
  "cluster-name": {
    type: "string",
    valueName: "NAME",
    description: "cluster name (the same on every node)",
    defaultText: "unibus",
  },
  "cluster-host": {
    type: "string",
    valueName: "HOST",
    description: "route listener host; any --cluster-* or --routes flag makes this node clustered",
    defaultText: "127.0.0.1",
  },
  "cluster-port": {
    type: "string",
    valueName: "PORT",
    description: "route listener port",
    defaultText: String(DEFAULT_CLUSTER_PORT),
  },
  routes: {
    type: "string",
    valueName: "URL,URL",
    description: "the other nodes' routes, e.g. nats://10.0.0.2:6250 (secret injected)",
  },
  "cluster-user": {
    type: "string",
    valueName: "NAME",
    description: "route user",
    defaultText: "unibus-cluster",
  },
  "cluster-pass-file": {
    type: "string",
    valueName: "PATH",
    description: `route secret file (0600); else ${CLUSTER_PASS_ENV}, else --cluster-pass`,
  },
  "cluster-pass": {
    type: "string",
    valueName: "SECRET",
    description: "route secret on the command line (visible in ps and journald: avoid)",
  },
  "route-tls-cert": {
    type: "string",
    valueName: "PATH",
    description: "route certificate (serverAuth + clientAuth), signed by the route CA",
  },
  "route-tls-key": { type: "string", valueName: "PATH", description: "its private key" },
  "route-tls-ca": {
    type: "string",
    valueName: "PATH",
    description: "route CA (must not be the data-plane CA); routes are mutual TLS",
  },
  "lame-duck-duration": {
    type: "string",
    valueName: "SECONDS",
    description:
      `on SIGTERM, nats-server's lame duck: clients are closed within this (at least ${MIN_LAME_DUCK_S}, nats-server's minimum)`,
    defaultText: String(DEFAULT_LAME_DUCK.durationS),
  },
  "lame-duck-grace": {
    type: "string",
    valueName: "SECONDS",
    description: "lame duck: wait this long after telling clients before closing them",
    defaultText: String(DEFAULT_LAME_DUCK.graceS),
  },
};

const CLUSTER_ONLY = [
  "cluster-name",
  "cluster-user",
  "cluster-pass-file",
  "cluster-pass",
  "route-tls-cert",
  "route-tls-key",
  "route-tls-ca",
  "lame-duck-duration",
  "lame-duck-grace",
];

/**
 * Parses the cluster flags; null when the node is not clustered. `env` is the
 * process environment (for {@linkcode CLUSTER_PASS_ENV}).
 *
 * @example
 * ```ts
 * const c = parseClusterArgs({ routes: "nats://127.0.0.1:6251", "cluster-pass-file": "/etc/unibus/route.pass" }, {});
 * c?.port; // 6250
 * ```
 */
export function parseClusterArgs(
  v: Record<string, string | boolean | undefined>,
  env: Record<string, string | undefined>,
): ClusterOptions | null {
  const str = (k: string) => v[k] as string | undefined;
  const clustered = ["routes", "cluster-host", "cluster-port"].some((k) => str(k) !== undefined);
  if (!clustered) {
    const stray = CLUSTER_ONLY.find((k) => str(k) !== undefined);
    if (stray) {
      throw new UsageError(
        `--${stray} needs a cluster: give --routes (and --cluster-host/--cluster-port)`,
      );
    }
    return null;
  }
  const name = str("cluster-name") ?? "unibus";
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
    throw new UsageError(`--cluster-name: "${name}" must be 1-64 letters, digits, '.', '_' or '-'`);
  }
  const host = str("cluster-host") ?? "127.0.0.1";
  if (!host || /[\s"'\\$]/.test(host)) {
    throw new UsageError(`--cluster-host: "${host}" is not a host name or address`);
  }
  let port: number;
  try {
    port = parsePort(str("cluster-port") ?? String(DEFAULT_CLUSTER_PORT));
  } catch (err) {
    throw new UsageError(`--cluster-port: ${(err as Error).message}`);
  }
  if (port === 0) throw new UsageError("--cluster-port: must be 1-65535");

  const routes = (str("routes") ?? "").split(",").map((r) => r.trim()).filter((r) => r !== "");
  for (const r of routes) {
    // Never echo a route with its userinfo: that may be the secret.
    const shown = r.replace(/^([a-z-]+:\/\/)[^@/]*@/i, "$1***@");
    let u: URL;
    try {
      u = new URL(r);
    } catch {
      throw new UsageError(`--routes: "${shown}" is not a URL`);
    }
    if (
      !["nats:", "nats-route:", "tls:"].includes(u.protocol) || !u.port || u.pathname.length > 1
    ) {
      throw new UsageError(`--routes: "${shown}" must be nats://HOST:PORT`);
    }
    if (/["\\$\s]/.test(r)) {
      throw new UsageError(`--routes: "${shown}" must not contain quotes, '$' or spaces`);
    }
  }

  const user = str("cluster-user") ?? "unibus-cluster";
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(user)) {
    throw new UsageError(`--cluster-user: "${user}" must be 1-64 letters, digits, '.', '_' or '-'`);
  }
  // Precedence file > environment > flag: the first two keep the
  // secret out of argv, which ps and journald show to anyone on the host.
  const passFile = str("cluster-pass-file");
  const envPass = env[CLUSTER_PASS_ENV];
  const flagPass = str("cluster-pass");
  const pass: ClusterPassSource | null = passFile !== undefined
    ? { kind: "file", path: passFile }
    : envPass
    ? { kind: "env", value: envPass }
    : flagPass !== undefined
    ? { kind: "flag", value: flagPass }
    : null;
  // A route port without a secret lets anyone who reaches it join the
  // cluster and read every message; loopback included, since any local
  // process can dial it.
  if (pass === null) {
    throw new UsageError(
      `a cluster needs a route secret: --cluster-pass-file FILE (or ${CLUSTER_PASS_ENV})`,
    );
  }

  const [certFile, keyFile, caFile] = [
    str("route-tls-cert"),
    str("route-tls-key"),
    str("route-tls-ca"),
  ];
  const given = [certFile, keyFile, caFile].filter((x) => x !== undefined).length;
  if (given !== 0 && given !== 3) {
    throw new UsageError("--route-tls-cert, --route-tls-key and --route-tls-ca go together");
  }
  const routeTls = certFile && keyFile && caFile ? { certFile, keyFile, caFile } : null;
  const seconds = (flag: string, fallback: number) => {
    const text = str(flag);
    if (text === undefined) return fallback;
    if (!/^\d{1,6}$/.test(text)) throw new UsageError(`--${flag}: "${text}" is not whole seconds`);
    return Number(text);
  };
  const lameDuck = {
    durationS: seconds("lame-duck-duration", DEFAULT_LAME_DUCK.durationS),
    graceS: seconds("lame-duck-grace", DEFAULT_LAME_DUCK.graceS),
  };
  // nats-server would refuse these at start, in words about its own config file.
  if (lameDuck.durationS < MIN_LAME_DUCK_S) {
    throw new UsageError(
      `--lame-duck-duration: at least ${MIN_LAME_DUCK_S} (nats-server's minimum); the drain itself takes about the grace plus a second per client left`,
    );
  }
  if (lameDuck.graceS < 1 || lameDuck.graceS >= lameDuck.durationS) {
    throw new UsageError("--lame-duck-grace: at least 1 and below --lame-duck-duration");
  }
  return { name, host, port, routes, user, pass, routeTls, lameDuck };
}
