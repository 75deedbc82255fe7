/**
 * The two JWTs the auth callout mints for every admitted connection (the user
 * JWT and the response that carries it), encoded and signed by
 * `@nats-io/jwt` as before, with one difference: the SHA-512 the library takes
 * of the claims for their `jti` is computed natively and synchronously.
 *
 * Why: the library (0.0.11, the newest release) asks `crypto.subtle.digest`
 * for it, which Deno runs on its blocking thread pool. Each JWT then waits
 * for one thread hop and a wake-up of the event loop: two per connect, 0.2-0.3
 * ms each at the median on this 2-core machine under load and milliseconds at
 * the tail (docs/benchmarks.md). The library exposes no
 * digest option, so for the synchronous part of each encode (the library
 * calls the digest before its first `await`), `crypto.subtle.digest` answers
 * SHA-512 from `node:crypto` with an already resolved promise, and is put
 * back before the call returns, so no other code can ever see the swap.
 *
 * What this does not change: the claims, the signature (our native issuer
 * key) and the `jti` itself are exactly what the library computes with
 * WebCrypto (same hash of the same bytes; tests/callout_jwt_test.ts checks
 * it). The `jti` is an identifier; nats-server checks neither it nor its
 * uniqueness. Any other algorithm asked for inside the window goes to
 * WebCrypto, and a future library version that hashed after an `await` would
 * simply get WebCrypto again: slower, never different.
 *
 * A JWT cannot be reused across connections: nats-server makes a one-time
 * user key for every callout request (`user_nkey`), and both JWTs name it.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  type AuthorizationResponse,
  encodeAuthorizationResponse,
  encodeUser,
  type KeyPair,
  type User,
} from "@nats-io/jwt";

type Subtle = { digest: SubtleCrypto["digest"] };

/**
 * Runs `encode` (a call into `@nats-io/jwt`) with SHA-512 answered by
 * `node:crypto` during its synchronous part; see the module documentation.
 *
 * @example
 * ```ts
 * const jwt = await withNativeJtiDigest(() => encodeUser("ada", userNkey, issuer, perms));
 * ```
 */
export function withNativeJtiDigest<T>(encode: () => Promise<T>): Promise<T> {
  const subtle = crypto.subtle as unknown as Subtle;
  const own = Object.hasOwn(subtle, "digest");
  const webCrypto = subtle.digest;
  subtle.digest = (algorithm, data) => {
    const name = typeof algorithm === "string" ? algorithm : algorithm.name;
    if (name.toUpperCase() !== "SHA-512") return webCrypto.call(subtle, algorithm, data);
    const bytes = ArrayBuffer.isView(data)
      ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      : new Uint8Array(data);
    const hash = createHash("sha512").update(bytes).digest();
    return Promise.resolve(new Uint8Array(hash).buffer);
  };
  try {
    return encode();
  } finally {
    if (own) subtle.digest = webCrypto;
    else delete (subtle as Partial<Subtle>).digest;
  }
}

/**
 * The user JWT: `@nats-io/jwt` `encodeUser` with the native `jti` digest.
 *
 * @example
 * ```ts
 * const jwt = await encodeUserJwt("ada", req.user_nkey, issuer, { pub, sub }, { aud: "UNIBUS" });
 * ```
 */
export function encodeUserJwt(
  name: string,
  userNkey: string,
  issuer: KeyPair,
  user: Partial<User>,
  opts: { aud: string },
): Promise<string> {
  return withNativeJtiDigest(() => encodeUser(name, userNkey, issuer, user, opts));
}

/**
 * The callout's answer: `@nats-io/jwt` `encodeAuthorizationResponse` with the
 * native `jti` digest.
 *
 * @example
 * ```ts
 * msg.respond(await encodeCalloutResponse(req.user_nkey, req.server_id.id, issuer, { jwt }));
 * ```
 */
export function encodeCalloutResponse(
  userNkey: string,
  serverId: string,
  issuer: KeyPair,
  answer: Partial<AuthorizationResponse>,
): Promise<string> {
  return withNativeJtiDigest(() =>
    encodeAuthorizationResponse(userNkey, serverId, issuer, answer, {})
  );
}
