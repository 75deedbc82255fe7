/**
 * serve's first stage: the keys it signs and connects with, and the
 * accounts' users the nats-server configuration names. Nothing here starts a
 * process; it only reads or creates key files and generates keys.
 *
 * @module
 */

import { NativeNkeyPair, Prefix } from "../../lib/auth/nkey.ts";
import { generateSeed } from "../../lib/crypto/ed25519.ts";
import { loadOrCreateIdentity } from "../../lib/identity/identity.ts";
import type { Logger } from "../../lib/log.ts";
import { loadOrCreateCalloutIssuer } from "../cluster/secrets.ts";
import { accountUser } from "../nats/account_users.ts";
import type { NatsAuthConfig } from "../nats/config.ts";
import type { ServeOptions } from "../options.ts";

/** serve's keys; null where the posture needs none. */
export interface ServeIdentities {
  /** Signs the auth callout's answers (enforce only). */
  issuer: NativeNkeyPair | null;
  /** serve's user in the system account: kicks and connection events (enforce only). */
  systemUser: NativeNkeyPair | null;
  /** serve's control-plane identity (enforce, or a nats-server of its own). */
  internalUser: NativeNkeyPair | null;
  /** serve's identity in the rooms' account (a nats-server of its own only). */
  roomsUser: NativeNkeyPair | null;
  /** serve's identity in the users' account (a nats-server of its own only). */
  usersUser: NativeNkeyPair | null;
  /** The auth section of the nats-server configuration these keys make. */
  natsAuth: NatsAuthConfig;
}

/**
 * Loads or creates serve's keys for `opts`. The callout issuer and the system
 * user live as long as this process unless an issuer file is given; the
 * internal identity is persisted with `internalIdFile`, so that a CLI on this
 * node (`user --store kv`, `migrate-to-kv`) can present it.
 *
 * @example
 * ```ts
 * const ids = await loadServeIdentities(opts, log);
 * renderNatsConfig({ …, auth: ids.natsAuth });
 * ```
 */
export async function loadServeIdentities(
  opts: ServeOptions,
  log: Logger,
): Promise<ServeIdentities> {
  const enforce = opts.busAuth === "enforce";
  // In a cluster any node may answer any node's callout request, and a
  // nats-server accepts only answers signed by the issuer in its own
  // config: so the nodes share one issuer, provisioned as a 0600 file.
  const issuer = !enforce
    ? null
    : opts.calloutIssuerFile
    ? await loadOrCreateCalloutIssuer(opts.calloutIssuerFile)
    : NativeNkeyPair.generate(Prefix.Account);
  const systemUser = enforce ? NativeNkeyPair.generate(Prefix.User) : null;
  // A nats-server of our own gets serve's identities in all three application
  // accounts (server/nats/config.ts), in development mode too: the control
  // plane and the streams are out of reach of the "local" user as well.
  const ownServer = opts.natsUrl === null;
  let internalUser: NativeNkeyPair | null = null;
  let roomsUser: NativeNkeyPair | null = null;
  let usersUser: NativeNkeyPair | null = null;
  if (enforce || ownServer) {
    const seed = opts.internalIdFile
      ? (await loadOrCreateIdentity(opts.internalIdFile)).signSeed
      : generateSeed();
    internalUser = new NativeNkeyPair(Prefix.User, seed);
    log.info("internal service identity", {
      nkey: internalUser.getPublicKey(),
      persisted: opts.internalIdFile ?? false,
    });
    if (ownServer) {
      // Derived from the internal seed: whoever holds the internal identity
      // reaches these accounts too, with no second key file to keep in step.
      roomsUser = accountUser(seed, "rooms");
      usersUser = accountUser(seed, "users");
    }
  }
  const internalUsers = {
    internalUser: internalUser?.getPublicKey(),
    roomsUser: roomsUser?.getPublicKey(),
    usersUser: usersUser?.getPublicKey(),
  };
  const natsAuth: NatsAuthConfig = enforce
    ? {
      mode: "enforce",
      calloutIssuer: issuer!.getPublicKey(),
      systemUser: systemUser!.getPublicKey(),
      ...internalUsers,
      internalUser: internalUser!.getPublicKey(),
    }
    : { mode: "off", ...internalUsers };
  return { issuer, systemUser, internalUser, roomsUser, usersUser, natsAuth };
}
