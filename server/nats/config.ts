/**
 * The nats-server configuration file, generated from unibus options by a pure
 * function so that what the data plane enforces can be read and tested without
 * starting a process. The file is rewritten at every start and never edited by
 * hand: the options are the source of truth.
 *
 * @module
 */

import { PERSISTED_ROOM_PREFIX } from "../../lib/auth/acl.ts";
import { NATS_MONITOR_HOST } from "./log_options.ts";

/**
 * The control plane's account: the KV buckets, the blob object store, the
 * auth callout, the cluster's gossip and serve's internal identity. No bus
 * user is in it and nothing is exported from it, so no answer that a bus
 * user can provoke (JetStream publishes its answers to whatever reply
 * subject the asker set) can land on one of its subjects. It keeps the name
 * the single application account had, so the buckets of an existing data
 * directory stay where they are.
 */
export const CONTROL_ACCOUNT = "UNIBUS";
/**
 * The bus users' account: every connection the auth callout admits, and
 * nothing else but serve's notice sender. No JetStream, so no JetStream
 * API exists in it for a reply subject to reach.
 */
export const USERS_ACCOUNT = "UNIBUS_USERS";
/**
 * The room streams' account. Users reach it only through the two service
 * imports below, whose answers nats-server routes back through a private
 * `_R_` reply subject: a user's reply subject never names anything in here,
 * so the streams' own JetStream API (create, update, delete, purge,
 * consumers) cannot be made to answer for a user.
 */
export const ROOMS_ACCOUNT = "UNIBUS_ROOMS";
/** The system account (server events, kick requests). */
export const SYSTEM_ACCOUNT = "SYS";

/** The internal users of the three application accounts, by public nkey ("U…"). */
export interface InternalUsers {
  /** serve's control-plane identity: KV, objects, callout, gossip; bypasses the callout. */
  internalUser: string;
  /** serve's identity in the rooms' account: creates and deletes room streams. */
  roomsUser?: string;
  /** serve's identity in the users' account: sends the server's notices. */
  usersUser?: string;
}

/** How clients are authenticated on the data plane. */
export type NatsAuthConfig =
  | ({ mode: "off" } & Partial<InternalUsers>)
  | ({
    mode: "enforce";
    /** Public account nkey ("A…") whose signature the server accepts on callout answers. */
    calloutIssuer: string;
    /** serve's system-account user ("U…"), for kick requests and connection events. */
    systemUser: string;
  } & InternalUsers);

/** Certificate and key for the client listener. */
export interface NatsTlsConfig {
  certFile: string;
  keyFile: string;
}

/**
 * The route listener and the peers to route to. Routes are
 * server-to-server: they authenticate nodes, never bus users.
 */
export interface NatsClusterConfig {
  name: string;
  host: string;
  port: number;
  /** Peer route URLs; a bare one gets `user`/`pass` injected, one with userinfo is kept. */
  routes: string[];
  user: string;
  /** The route secret. Written only into the 0600 config file, never to argv or a log. */
  pass: string;
  /** Mutual route TLS; `caFile` is the route CA, never the data-plane CA. */
  tls: { certFile: string; keyFile: string; caFile: string } | null;
}

/**
 * nats-server's lame duck mode (SIGUSR2, `nats-server --signal ldm`): it stops
 * accepting clients, hands its RAFT leaderships away, tells the clients it
 * holds (INFO `ldm`), waits `graceS`, then closes them spread over the rest of
 * `durationS` (at most one a second), so they reconnect to the other nodes
 * instead of all at once or to a node that is going away.
 */
export interface LameDuckConfig {
  /** `lame_duck_duration`; nats-server 2.10 refuses less than {@linkcode MIN_LAME_DUCK_S}. */
  durationS: number;
  /** `lame_duck_grace_period`: at least 1 (0 would mean nats-server's 10 s), below `durationS`. */
  graceS: number;
}

/** nats-server 2.10's shortest `lame_duck_duration` (opts.go: "minimum is 30 seconds"). */
export const MIN_LAME_DUCK_S = 30;

/** Everything the generated configuration depends on. */
export interface NatsConfigInput {
  serverName: string;
  host: string;
  port: number;
  /** Directory of the JetStream file store. */
  jetStreamDir: string;
  /**
   * JetStream's `max_file_store` in bytes: every stream reserves its
   * `max_bytes` from it, so it caps the node's persisted rooms. Null leaves
   * nats-server's own default (75% of the free disk).
   */
  maxFileStore?: number | null;
  /** JetStream's `sync_interval`: "always", or every this many ms; absent: nats-server's 2 min. */
  syncInterval?: "always" | number | null;
  /** nats-server writes its pid here; the next `serve` reaps a stale child with it. */
  pidFile: string;
  debug: boolean;
  trace: boolean;
  /** Port of the loopback-only monitoring endpoint, or null to keep it closed. */
  monitorPort: number | null;
  auth: NatsAuthConfig;
  tls: NatsTlsConfig | null;
  /** Absent or null: a single node. */
  cluster?: NatsClusterConfig | null;
  /**
   * Subscriptions one connection may hold (`max_subscriptions`); absent or
   * null: no limit (nats-server's default).
   */
  maxSubscriptions?: number | null;
  /** Absent or null: nats-server's defaults (2 min, 10 s grace); serve never asks for it then. */
  lameDuck?: LameDuckConfig | null;
}

/** Thrown when an option cannot be written into a config file safely. */
export class NatsConfigError extends Error {
  override name = "NatsConfigError";
}

// The config language has quoted strings with escapes; rather than trust our
// escaping against the server's parser, refuse the characters that could break
// out of a string or a line. Server names become subjects in $SYS, so keep them
// to a conservative alphabet as well.
function quote(field: string, value: string): string {
  if (/["\\\n\r\0$]/.test(value)) {
    throw new NatsConfigError(`${field} must not contain quotes, backslashes, '$' or newlines`);
  }
  return `"${value}"`;
}

/**
 * Renders the nats-server configuration for `input`.
 *
 * @example
 * ```ts
 * const text = renderNatsConfig({
 *   serverName: "n1", host: "127.0.0.1", port: 4250,
 *   jetStreamDir: "/var/lib/unibus/jetstream", pidFile: "/var/lib/unibus/nats-server.pid",
 *   debug: false, trace: false, monitorPort: null,
 * });
 * // text contains: port: 4250 and jetstream { store_dir: "/var/lib/unibus/jetstream" }
 * ```
 */
export function renderNatsConfig(input: NatsConfigInput): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(input.serverName)) {
    throw new NatsConfigError(
      `server name "${input.serverName}" must be 1-64 letters, digits, '.', '_' or '-'`,
    );
  }
  for (
    const [field, port] of [["port", input.port], ["monitor port", input.monitorPort]] as const
  ) {
    if (port !== null && (!Number.isInteger(port) || port < 0 || port > 65535)) {
      throw new NatsConfigError(`${field} ${port} is out of range (0-65535)`);
    }
  }
  const lines = [
    "# Generated by `unibus serve` at every start; edits are overwritten.",
    `server_name: ${quote("server name", input.serverName)}`,
    `host: ${quote("host", input.host)}`,
    `port: ${input.port}`,
    `pid_file: ${quote("pid file", input.pidFile)}`,
    // unibus wraps every line in its own timestamped JSON log.
    "logtime: false",
    `debug: ${input.debug}`,
    `trace: ${input.trace}`,
    "jetstream {",
    `  store_dir: ${quote("JetStream dir", input.jetStreamDir)}`,
  ];
  const maxStore = input.maxFileStore ?? null;
  if (maxStore !== null) {
    if (!Number.isSafeInteger(maxStore) || maxStore <= 0) {
      throw new NatsConfigError(`JetStream max store ${maxStore} must be a positive byte count`);
    }
    lines.push(`  max_file_store: ${maxStore}`);
  }
  const sync = input.syncInterval ?? null;
  if (sync === "always") lines.push("  sync_interval: always");
  else if (sync !== null) {
    if (!Number.isSafeInteger(sync) || sync < 1) {
      throw new NatsConfigError(`JetStream sync interval ${sync} must be a positive ms count`);
    }
    lines.push(`  sync_interval: "${sync}ms"`);
  }
  lines.push("}");
  const maxSubs = input.maxSubscriptions ?? null;
  if (maxSubs !== null) {
    if (!Number.isSafeInteger(maxSubs) || maxSubs < 1 || maxSubs > 2 ** 31 - 1) {
      throw new NatsConfigError(`max subscriptions ${maxSubs} must be a positive count`);
    }
    lines.push(`max_subscriptions: ${maxSubs}`);
  }
  if (input.lameDuck) lines.push(...lameDuckLines(input.lameDuck));
  lines.push(...authLines(input.auth));
  if (input.tls) {
    lines.push(
      "tls {",
      `  cert_file: ${quote("TLS cert", input.tls.certFile)}`,
      `  key_file: ${quote("TLS key", input.tls.keyFile)}`,
      "  timeout: 5",
      "}",
    );
  }
  if (input.cluster) lines.push(...clusterLines(input.cluster));
  if (input.monitorPort !== null) {
    // Loopback only, whatever the client bind: the endpoint has no auth.
    lines.push(`http: "${NATS_MONITOR_HOST}:${input.monitorPort}"`);
  }
  return lines.join("\n") + "\n";
}

function lameDuckLines(ld: LameDuckConfig): string[] {
  // Checked here rather than left to nats-server: it would refuse the file
  // at start with a parse error far from the flag that caused it.
  if (!Number.isSafeInteger(ld.durationS) || ld.durationS < MIN_LAME_DUCK_S) {
    throw new NatsConfigError(
      `lame duck duration ${ld.durationS} s: nats-server needs whole seconds, at least ${MIN_LAME_DUCK_S}`,
    );
  }
  if (!Number.isSafeInteger(ld.graceS) || ld.graceS < 1 || ld.graceS >= ld.durationS) {
    throw new NatsConfigError(
      `lame duck grace ${ld.graceS} s must be whole seconds, at least 1 and below the duration (${ld.durationS} s)`,
    );
  }
  return [`lame_duck_duration: "${ld.durationS}s"`, `lame_duck_grace_period: "${ld.graceS}s"`];
}

function nkey(field: string, value: string, prefix: "A" | "U"): string {
  if (!new RegExp(`^${prefix}[A-Z2-7]{55}$`).test(value)) {
    throw new NatsConfigError(`${field} must be a public nkey starting with ${prefix}`);
  }
  return `"${value}"`;
}

// Both modes lay out the same accounts, so a data directory keeps its
// streams when an operator switches --bus-auth. Development mode differs only
// in letting a client without credentials in as "local", a bus user.
function authLines(auth: NatsAuthConfig): string[] {
  const internal = auth.internalUser ? nkey("internal user", auth.internalUser, "U") : null;
  const rooms = auth.roomsUser ? nkey("rooms user", auth.roomsUser, "U") : null;
  const users = auth.usersUser ? nkey("users user", auth.usersUser, "U") : null;
  const nkeyUsers = (key: string | null) => key ? `users: [ { nkey: ${key} } ]` : "";
  const lines = [
    "accounts {",
    `  ${CONTROL_ACCOUNT} { jetstream: enabled, ${nkeyUsers(internal)} }`,
    `  ${ROOMS_ACCOUNT} {`,
    "    jetstream: enabled",
    `    ${nkeyUsers(rooms)}`,
    // One export for both imports, on purpose: nats-server refuses to pass a
    // message through the same export twice. A user can aim the answer of
    // one import (a direct get, an ack) at the other's subject in its own
    // account; with one export that second hop is a cycle and is dropped,
    // so no answer is ever stored into another room's stream. Only the
    // users' account may import it, and only what is listed below.
    `    exports: [ { service: ">", accounts: [ ${USERS_ACCOUNT} ], response_threshold: "10s" } ]`,
    "  }",
    `  ${USERS_ACCOUNT} {`,
    auth.mode === "off"
      ? `    users: [ { user: "local" }${users ? `, { nkey: ${users} }` : ""} ]`
      : `    ${nkeyUsers(users)}`,
    "    imports: [",
    // Persisted rooms' packets: stored, and acknowledged through a private
    // reply subject of nats-server's.
    `      { service: { account: ${ROOMS_ACCOUNT}, subject: "${PERSISTED_ROOM_PREFIX}.*" } }`,
    // History reads: one stored message per request. Which stream a user
    // may read is its ACL's decision (its own rooms' streams only).
    `      { service: { account: ${ROOMS_ACCOUNT}, subject: "$JS.API.DIRECT.GET.*" } }`,
    "    ]",
    "  }",
  ];
  if (auth.mode === "off") {
    return [
      ...lines,
      "}",
      // Development only: any client without credentials becomes "local".
      'no_auth_user: "local"',
    ];
  }
  const system = nkey("system user", auth.systemUser, "U");
  if (!internal) throw new NatsConfigError("enforce mode needs the internal user");
  return [
    ...lines,
    // An nkey user in the config is also what makes the server send every
    // client a nonce to sign; without one, nkey clients cannot prove anything.
    `  ${SYSTEM_ACCOUNT} { users: [ { nkey: ${system} } ] }`,
    "}",
    `system_account: ${SYSTEM_ACCOUNT}`,
    "authorization {",
    "  auth_callout {",
    `    issuer: ${nkey("callout issuer", auth.calloutIssuer, "A")}`,
    `    account: ${CONTROL_ACCOUNT}`,
    `    auth_users: [ ${[internal, system, rooms, users].filter(Boolean).join(", ")} ]`,
    "  }",
    "}",
  ];
}

/**
 * Puts the route credentials into a route URL that has none; a URL that
 * carries its own userinfo is the operator's explicit choice and is kept.
 * The result holds the secret: it goes into the config file and nowhere else.
 *
 * @example
 * ```ts
 * routeWithCredentials("nats://10.0.0.2:6250", "unibus-cluster", "s3cret-s3cret-s3cret");
 * // "nats://unibus-cluster:s3cret-s3cret-s3cret@10.0.0.2:6250"
 * ```
 */
export function routeWithCredentials(route: string, user: string, pass: string): string {
  let url: URL;
  try {
    url = new URL(route);
  } catch {
    throw new NatsConfigError(`route "${redactRoute(route)}" is not a URL`);
  }
  if (url.username !== "" || url.password !== "") return route;
  url.username = encodeURIComponent(user);
  url.password = encodeURIComponent(pass);
  return url.toString().replace(/\/$/, "");
}

/**
 * A route URL fit for a log line or an error message: userinfo replaced.
 *
 * @example
 * ```ts
 * redactRoute("nats://u:secret@10.0.0.2:6250"); // "nats://***@10.0.0.2:6250"
 * ```
 */
export function redactRoute(route: string): string {
  return route.replace(/^([a-z-]+:\/\/)[^@/]*@/i, "$1***@");
}

function clusterLines(c: NatsClusterConfig): string[] {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(c.name)) {
    throw new NatsConfigError(
      `cluster name "${c.name}" must be 1-64 letters, digits, '.', '_' or '-'`,
    );
  }
  if (!Number.isInteger(c.port) || c.port < 1 || c.port > 65535) {
    throw new NatsConfigError(`cluster port ${c.port} is out of range (1-65535)`);
  }
  const lines = [
    "cluster {",
    `  name: ${quote("cluster name", c.name)}`,
    `  host: ${quote("cluster host", c.host)}`,
    `  port: ${c.port}`,
    // One route connection per peer: with the 2.10 default pool of
    // three, a three-node cluster churned "duplicate route" reconnects that
    // broke the meta group's RAFT heartbeats, and the leader changed forever.
    "  pool_size: -1",
    // Peers dial only the routes listed here and clients learn no other node
    // from us (advertised addresses such as Docker bridge IPs get dialled by peers;
    // and serve's internal connection must never drift to a node whose
    // nats-server does not know its key).
    "  no_advertise: true",
    "  authorization {",
    `    user: ${quote("cluster user", c.user)}`,
    `    password: ${quote("cluster password", c.pass)}`,
    "    timeout: 2",
    "  }",
    `  routes: [${
      c.routes.map((r) => quote("route", routeWithCredentials(r, c.user, c.pass))).join(", ")
    }]`,
  ];
  if (c.tls) {
    lines.push(
      "  tls {",
      `    cert_file: ${quote("route TLS cert", c.tls.certFile)}`,
      `    key_file: ${quote("route TLS key", c.tls.keyFile)}`,
      `    ca_file: ${quote("route TLS CA", c.tls.caFile)}`,
      // Both ends present and check a certificate from the route CA.
      "    verify: true",
      "    timeout: 5",
      "  }",
    );
  }
  lines.push("}");
  return lines;
}
