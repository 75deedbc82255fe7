/**
 * serve's identities in the rooms' and the users' accounts, derived from its
 * control-plane identity (the internal identity) with HKDF-SHA-256. Whoever
 * holds the internal identity may already do everything on the node; a
 * derived key lets an operator with `--internal-id-file` (and the tests)
 * reach a room's stream too, without a second key file to provision, back
 * up and keep in step across restarts. Knowing a derived key tells nothing
 * of the internal one (HKDF is one-way).
 *
 * @module
 */

import { hkdfSync } from "node:crypto";
import { NativeNkeyPair, Prefix } from "../../lib/auth/nkey.ts";

/** The accounts that have a derived serve identity. */
export type DerivedAccount = "rooms" | "users";

/**
 * serve's nkey user in `account`, derived from the internal identity's seed.
 *
 * @example
 * ```ts
 * const rooms = accountUser(internal.signSeed, "rooms");
 * rooms.getPublicKey(); // "U…", the same for the same seed on every start
 * ```
 */
export function accountUser(internalSeed: Uint8Array, account: DerivedAccount): NativeNkeyPair {
  const seed = new Uint8Array(
    hkdfSync("sha256", internalSeed, new Uint8Array(0), `unibus/account-user/v1/${account}`, 32),
  );
  return new NativeNkeyPair(Prefix.User, seed);
}
