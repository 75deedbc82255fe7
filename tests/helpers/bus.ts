/**
 * Bus users for enforce-mode tests: allowlisted identities, raw nats.js
 * connections made with them, and checks for NATS permission violations.
 *
 * The connections are deliberately made with the raw nats.js library, not a
 * unibus client: the tests play the attacker, and an attacker brings their own
 * client.
 *
 * @module
 */

import { type Authenticator, connect, type NatsConnection } from "@nats-io/transport-node";
import { inboxPrefixFor } from "../../lib/auth/acl.ts";
import { busUserAuthenticator, NativeNkeyPair, Prefix } from "../../lib/auth/nkey.ts";
import { generateIdentity, type Identity } from "../../lib/identity/identity.ts";
import { installConnectionResetGuard } from "../../lib/nats/connection_reset_guard.ts";
import type { Role, Store } from "../../lib/store/store.ts";

// They live with the other NATS checks of a test, but need nothing of unibus.
export { publishDenied, subscribeDenied } from "./denied.ts";

// Refused and cut connections end in a late ECONNRESET under node-compat; the
// same guard as in the CLI keeps it from failing the test module.
installConnectionResetGuard();

/** An allowlisted user with its nkey pair. */
export interface BusUser {
  identity: Identity;
  kp: NativeNkeyPair;
  hex: string;
}

/**
 * Creates an identity and puts it on the allowlist.
 *
 * @example
 * ```ts
 * const alice = await addBusUser(store, "alice");
 * ```
 */
export function addBusUser(
  store: Store,
  handle: string,
  role: Role = "member",
): Promise<BusUser> {
  return addUserFromIdentity(store, generateIdentity(handle), role);
}

/**
 * Puts an existing identity on the allowlist.
 *
 * @example
 * ```ts
 * const alice = await addUserFromIdentity(store, generateIdentity("alice"));
 * ```
 */
export async function addUserFromIdentity(
  store: Store,
  identity: Identity,
  role: Role = "member",
): Promise<BusUser> {
  await store.addUser({
    signPub: identity.signPubHex,
    handle: identity.handle ?? "user",
    role,
    kexPub: identity.kexPubHex,
    kexSig: identity.kexSigHex,
  });
  return busUserOf(identity);
}

/**
 * The nkey pair and hex of an identity, as tests use them.
 *
 * @example
 * ```ts
 * const u = busUserOf(generateIdentity("x"));
 * ```
 */
export function busUserOf(identity: Identity): BusUser {
  return {
    identity,
    kp: new NativeNkeyPair(Prefix.User, identity.signSeed),
    hex: identity.signPubHex,
  };
}

/** An identity that is NOT on the allowlist. */
export function strangerUser(): BusUser {
  const identity = generateIdentity("stranger");
  return {
    identity,
    kp: new NativeNkeyPair(Prefix.User, identity.signSeed),
    hex: identity.signPubHex,
  };
}

/**
 * Creates a room with `members` (first one is its admin).
 *
 * @example
 * ```ts
 * await addRoom(store, "r1", "agent.scout.in", [alice, bob]);
 * ```
 */
export async function addRoom(
  store: Store,
  id: string,
  subject: string,
  members: BusUser[],
  persist = false,
): Promise<void> {
  await store.createRoom({
    id,
    subject,
    policy: { encrypt: true, sign: true, persist },
    createdBy: members[0].hex,
  });
  for (const [i, m] of members.entries()) {
    await store.addMember({
      roomId: id,
      signPub: m.hex,
      role: i === 0 ? "admin" : "member",
      addedBy: members[0].hex,
      change: null,
    });
  }
}

/**
 * Connects with raw nats.js as `user` (or with any authenticator), without
 * reconnecting, so a refused or cut connection stays visible.
 *
 * @example
 * ```ts
 * const nc = await connectAs(4250, alice);
 * ```
 */
export function connectAs(
  port: number,
  user: BusUser | null,
  opts: { authenticator?: Authenticator; reconnect?: boolean; caFile?: string; tls?: boolean } = {},
): Promise<NatsConnection> {
  return connect({
    servers: `${opts.tls ? "tls" : "nats"}://127.0.0.1:${port}`,
    authenticator: opts.authenticator ?? (user ? busUserAuthenticator(user.kp) : undefined),
    inboxPrefix: user ? inboxPrefixFor(user.hex) : undefined,
    reconnect: opts.reconnect ?? false,
    maxReconnectAttempts: opts.reconnect ? -1 : 0,
    reconnectTimeWait: 100,
    timeout: 3000,
    tls: opts.caFile ? { caFile: opts.caFile } : undefined,
  });
}
