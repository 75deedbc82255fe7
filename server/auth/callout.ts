/**
 * The auth callout service: nats-server hands every client connection to it
 * (`$SYS.REQ.USER.AUTH`), and it answers with a user JWT carrying that user's
 * ACL, or with an error that the server turns into "Authorization Violation".
 *
 * The server does NOT check an nkey client's signature over its nonce when
 * auth callout is on: it forwards nkey, signature and nonce and trusts the
 * answer. So the proof of key possession is verified here, natively, before
 * anything else; skipping it would let anyone connect by naming a user's
 * public key.
 *
 * @module
 */

import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { aclRooms, grantedPermissions } from "../../lib/auth/acl.ts";
import {
  decodeAnyBase64,
  decodePublicNkey,
  type NativeNkeyPair,
  natsAuthMessage,
  Prefix,
} from "../../lib/auth/nkey.ts";
import { verifySignature } from "../../lib/crypto/ed25519.ts";
import { toHex } from "../../lib/identity/hex.ts";
import type { Logger } from "../../lib/log.ts";
import type { Store } from "../../lib/store/store.ts";
import { USERS_ACCOUNT } from "../nats/config.ts";
import { encodeCalloutResponse, encodeUserJwt } from "./jwt.ts";
import type { Session, SessionRegistry } from "./sessions.ts";
import type { Limits } from "../limits.ts";

/** The subject nats-server sends authorization requests to. */
export const AUTH_CALLOUT_SUBJECT = "$SYS.REQ.USER.AUTH";
/** One member per node answers each request. */
export const AUTH_CALLOUT_QUEUE = "unibus-auth";

/** What the callout needs. */
export interface CalloutOptions {
  /** The internal connection (app account, bypasses the callout). */
  nc: NatsConnection;
  /** Signs answers and user JWTs; its public key is the config's `issuer`. */
  issuer: NativeNkeyPair;
  store: Store;
  sessions: SessionRegistry;
  log: Logger;
  /** What one user and one connection may hold (server/limits.ts). */
  limits: Pick<Limits, "connectionsPerUser">;
  /**
   * In a cluster: where an admitted connection is reported instead of
   * `sessions` (server/cluster/session_feed.ts hands it to the node whose
   * nats-server holds it). This node may have answered for another node.
   */
  grant?: (session: Session) => void;
  /** Called once per answer, for metrics. */
  onAnswer?: (ms: number, allowed: boolean) => void;
  /**
   * In a cluster: whether a majority of the nodes is reachable right now
   * (server/cluster/status.ts `majorityAlive`). A login needs it as well as
   * the store's answer: a node that just lost both peers may still lead the
   * control-plane streams for the seconds until RAFT notices, and would
   * otherwise admit from its own copy alone.
   */
  quorum?: () => Promise<boolean>;
}

/** Counters for health and benchmarks. */
export interface CalloutStats {
  allowed: number;
  denied: number;
  /** Rooms left out of admitted users' ACLs because their subject is inexpressible. */
  roomsLeftOut: number;
}

interface AuthRequest {
  server_id: { id: string; name?: string };
  user_nkey: string;
  client_info?: { id?: number; host?: string; nonce?: string; name?: string };
  connect_opts?: { nkey?: string; sig?: string; name?: string };
}

/** Thrown for a request that did not come from a nats-server. */
class BadRequestJwt extends Error {}

const te = new TextEncoder();
const td = new TextDecoder();

function base64UrlJson(part: string): unknown {
  const bytes = decodeAnyBase64(part);
  if (!bytes) throw new BadRequestJwt("bad base64");
  return JSON.parse(td.decode(bytes));
}

// Decodes the request JWT and checks that the server that names itself as
// issuer signed it. The subject is only reachable with the internal identity,
// so this is defence in depth, at native speed.
function parseRequest(token: string): AuthRequest {
  const parts = token.split(".");
  if (parts.length !== 3) throw new BadRequestJwt("not a JWT");
  const claims = base64UrlJson(parts[1]) as { iss?: string; nats?: AuthRequest };
  const req = claims.nats;
  if (!claims.iss || !req?.server_id?.id || claims.iss !== req.server_id.id || !req.user_nkey) {
    throw new BadRequestJwt("incomplete authorization request");
  }
  const sig = decodeAnyBase64(parts[2]);
  const serverKey = decodePublicNkey(Prefix.Server, claims.iss);
  if (!sig || !verifySignature(serverKey, te.encode(`${parts[0]}.${parts[1]}`), sig)) {
    throw new BadRequestJwt("request signature does not verify");
  }
  return req;
}

/** A refusal with the reason that is logged (the client only sees "Authorization Violation"). */
class Denied extends Error {}

/**
 * Starts answering authorization requests; returns a handle to stop it.
 *
 * @example
 * ```ts
 * const callout = startAuthCallout({ nc, issuer, store, sessions, log });
 * // … later
 * await callout.stop();
 * ```
 */
export function startAuthCallout(
  opts: CalloutOptions,
): { stop(): Promise<void>; stats: CalloutStats } {
  const stats: CalloutStats = { allowed: 0, denied: 0, roomsLeftOut: 0 };
  // Admissions answered but not yet recorded as sessions, per user: counted
  // with the sessions, so that logins racing each other cannot pass the
  // connection limit together.
  const inFlight = new Map<string, number>();
  const sub: Subscription = opts.nc.subscribe(AUTH_CALLOUT_SUBJECT, {
    queue: AUTH_CALLOUT_QUEUE,
    callback: (err, msg) => {
      if (err) {
        opts.log.error("auth callout subscription failed", { error: err });
        return;
      }
      handle(opts, msg, stats, inFlight).catch((e) =>
        opts.log.error("auth callout could not answer", { error: e })
      );
    },
  });
  return {
    stats,
    async stop() {
      await sub.drain().catch(() => {});
    },
  };
}

async function handle(
  opts: CalloutOptions,
  msg: Msg,
  stats: CalloutStats,
  inFlight: Map<string, number>,
): Promise<void> {
  const started = performance.now();
  let req: AuthRequest;
  try {
    req = parseRequest(msg.string());
  } catch (err) {
    // Without a valid request there is no server key to address an answer
    // to; the server times the client out, which also refuses it.
    opts.log.warn("ignored a malformed authorization request", { reason: (err as Error).message });
    return;
  }
  const client = {
    cid: req.client_info?.id,
    host: req.client_info?.host,
    nkey: req.connect_opts?.nkey,
  };
  let answer;
  let admitted: Record<string, unknown> | null = null;
  let record: (() => void) | null = null;
  let counted: string | null = null;
  try {
    const jwt = await admit(opts, req, stats, inFlight);
    counted = jwt.signPub;
    answer = { jwt: jwt.jwt };
    admitted = jwt.admitted;
    record = jwt.record;
    stats.allowed++;
  } catch (err) {
    const reason = err instanceof Denied ? err.message : "authorization unavailable";
    if (!(err instanceof Denied)) {
      // The store failed: fail closed, and say why in the log.
      opts.log.error("authorization failed closed", { ...client, error: err });
    }
    opts.log.audit("login.denied", "connection refused", {
      ...client,
      server: req.server_id?.name ?? req.server_id?.id,
      reason,
    });
    answer = { error: reason };
    stats.denied++;
  }
  try {
    if (
      !msg.respond(
        await encodeCalloutResponse(req.user_nkey, req.server_id.id, opts.issuer, answer),
      )
    ) throw new Error("the authorization request has no reply subject");
  } catch (err) {
    if (counted !== null) release(inFlight, counted);
    throw err;
  }
  // The session is recorded once the answer is on its way, not while it is
  // encoded: recording starts the enforcer's re-check of the user (another
  // store read), which competed with the encoding (+0.2 ms p50 a connect).
  // Nothing is lost by the order: that re-check reads the store after the
  // session is known, so a change made since our reads is still caught.
  // nats.js writes what respond() queued from a microtask queued before this
  // one: yielding once puts the answer on the socket before the bookkeeping
  // below (the log line is a synchronous write), not after it.
  await Promise.resolve();
  record?.();
  if (counted !== null) release(inFlight, counted);
  // Only once the answer is out: logged earlier, a failed send read as
  // "connection admitted" followed by "could not answer". With how long the
  // answer took: the store was read at most that long before this line, so
  // an admission logged after a revoke returned is told from one decided
  // after it (the first is a login that overlapped the revoke; the enforcer
  // cuts it at once, see enforcer.ts; the second must never happen).
  if (admitted) {
    opts.log.audit("login.admitted", "connection admitted", {
      ...admitted,
      ms: Math.round((performance.now() - started) * 10) / 10,
    });
  }
  opts.onAnswer?.(performance.now() - started, "jwt" in answer);
  opts.log.debug("authorization answered", {
    cid: client.cid,
    allowed: "jwt" in answer,
    ms: Math.round((performance.now() - started) * 1000) / 1000,
  });
}

/**
 * The JWT's display name. The JWT library base64-encodes its JSON with
 * `btoa`, which throws on characters above U+00FF (and mangles U+0080-U+00FF):
 * a handle such as "☃" would refuse every login of its user. Non-ASCII is
 * written as `\uXXXX`, which keeps the name readable in server logs.
 *
 * @example
 * ```ts
 * jwtName("ada ☃"); // "ada \u2603"
 * ```
 */
export function jwtName(handle: string): string {
  return handle.replace(
    /[^\x20-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

function release(inFlight: Map<string, number>, signPub: string): void {
  const n = (inFlight.get(signPub) ?? 1) - 1;
  if (n > 0) inFlight.set(signPub, n);
  else inFlight.delete(signPub);
}

async function admit(
  opts: CalloutOptions,
  req: AuthRequest,
  stats: CalloutStats,
  inFlight: Map<string, number>,
): Promise<
  { jwt: string; admitted: Record<string, unknown>; record: () => void; signPub: string }
> {
  const nkey = req.connect_opts?.nkey;
  const sigText = req.connect_opts?.sig;
  const nonce = req.client_info?.nonce;
  if (!nkey) throw new Denied("no nkey presented");
  if (!sigText || !nonce) throw new Denied("no signature over the server nonce");
  let signPub: Uint8Array;
  try {
    signPub = decodePublicNkey(Prefix.User, nkey);
  } catch {
    throw new Denied("malformed user nkey");
  }
  const sig = decodeAnyBase64(sigText);
  // Over the domain-separated message, never the bare nonce (lib/auth/nkey.ts:
  // busUserAuthenticator says why).
  if (!sig || !verifySignature(signPub, natsAuthMessage(nonce), sig)) {
    throw new Denied("nonce signature does not verify");
  }
  const signPubHex = toHex(signPub);
  // The user and its rooms together, linearizable: never older than a write
  // acknowledged before this read began, on any node, whatever the cluster
  // is doing (Store.getUserAccess; SQLite proves it with its change token,
  // KV checks each record that grants access against its bucket's RAFT
  // log, so a revoke returned during a leader election is never missed). A
  // login that overlaps a revoke may still be admitted (its read came
  // first): the enforcer's re-check of every admission, the same read, cuts
  // it. The rooms are wasted on a refusal, but an admitted connect (the
  // common case) waits for one read.
  // Throws when the store cannot be read: the login fails closed (handle).
  // The quorum question runs alongside the read, so it adds no round trip.
  const [{ user, rooms }, quorate] = await Promise.all([
    opts.store.getUserAccess(signPubHex),
    opts.quorum?.() ?? true,
  ]);
  if (!quorate) throw new Error("no majority of the cluster's nodes is reachable");
  if (!user) throw new Denied("key is not on the allowlist");
  if (user.status !== "active") throw new Denied("user is revoked");
  // Counted over the admitted sessions this node knows (in a cluster, every
  // node's) and the admissions still in flight here, checked and counted in
  // one step: logins racing each other on this node cannot pass the limit
  // together (on different nodes, by at most the few in flight there).
  // The user's own limit (`unibus user set-limits`) overrides the node's.
  const limit = user.maxConnections ?? opts.limits.connectionsPerUser;
  const held = opts.sessions.forUser(signPubHex).length + (inFlight.get(signPubHex) ?? 0);
  if (held >= limit) {
    throw new Denied(`too many connections: ${held} of ${limit} held`);
  }
  inFlight.set(signPubHex, (inFlight.get(signPubHex) ?? 0) + 1);
  try {
    return await grant(opts, req, stats, signPubHex, user, rooms);
  } catch (err) {
    release(inFlight, signPubHex);
    throw err;
  }
}

async function grant(
  opts: CalloutOptions,
  req: AuthRequest,
  stats: CalloutStats,
  signPubHex: string,
  user: NonNullable<Awaited<ReturnType<Store["getUserAccess"]>>["user"]>,
  rooms: Awaited<ReturnType<Store["getUserAccess"]>>["rooms"],
): Promise<
  { jwt: string; admitted: Record<string, unknown>; record: () => void; signPub: string }
> {
  // Defensive: what another user stored (a room added us to) must never cost
  // us the login. A room the ACL cannot express is left out, logged and
  // counted; the user gets the rest (lib/auth/acl.ts grants it nothing too).
  // Also bounded in size: past it, nats-server could not take the JWT.
  const { granted, leftOut: inexpressible } = aclRooms(signPubHex, rooms);
  for (const x of inexpressible) {
    stats.roomsLeftOut++;
    opts.log.warn(
      x.rule === "acl_full"
        ? "room left out of the ACL: the ACL is full"
        : "room left out of the ACL: its subject is inexpressible",
      { signPub: signPubHex, room: x.room.id, rule: x.rule },
    );
  }
  const permissions = grantedPermissions(signPubHex, granted);
  const jwt = await encodeUserJwt(
    jwtName(user.handle),
    req.user_nkey,
    opts.issuer,
    // No `subs` or `payload` limits here: nats-server (without an operator)
    // discards the limits of a callout's user JWT and applies only its
    // permissions, so they would only look enforced.
    { pub: permissions.pub, sub: permissions.sub },
    // Without aud naming the account, the JWT library writes "NATS", which
    // the server rejects: aud places the user in the users' account.
    { aud: USERS_ACCOUNT },
  );
  const record = () => {
    if (typeof req.client_info?.id !== "number") return;
    const session = {
      signPub: signPubHex,
      serverId: req.server_id.id,
      cid: req.client_info.id,
      permissions,
      admittedAt: Date.now(),
    };
    if (opts.grant) opts.grant(session);
    else opts.sessions.add(session);
  };
  const admitted = {
    handle: user.handle,
    signPub: signPubHex,
    cid: req.client_info?.id,
    // Which nats-server holds the connection: any node may answer for any.
    server: req.server_id.name ?? req.server_id.id,
    rooms: granted.length,
    roomsLeftOut: inexpressible.length,
  };
  return { jwt, admitted, record, signPub: signPubHex };
}
