/**
 * The callout's JWTs with the native `jti` digest (server/auth/jwt.ts): the
 * same tokens `@nats-io/jwt` makes with WebCrypto, and WebCrypto untouched
 * outside each encode.
 */

import { decode, encodeAuthorizationResponse, encodeUser } from "@nats-io/jwt";
import { encodePublicNkey, NativeNkeyPair, Prefix } from "../lib/auth/nkey.ts";
import { encodeCalloutResponse, encodeUserJwt, withNativeJtiDigest } from "../server/auth/jwt.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./helpers/assert.ts";

const issuer = NativeNkeyPair.generate(Prefix.Account);
const server = NativeNkeyPair.generate(Prefix.Server);
const userNkey = encodePublicNkey(Prefix.User, crypto.getRandomValues(new Uint8Array(32)));
const perms = { pub: { allow: ["room.a", "_INBOX_x.>"] }, sub: { allow: ["room.a"] } };

/** What @nats-io/jwt puts in `jti`: standard base64 of SHA-512 over the claims before it. */
async function webCryptoJti(claims: Record<string, unknown>): Promise<string> {
  const { jti: _, ...before } = claims;
  const hash = await crypto.subtle.digest(
    "SHA-512",
    new TextEncoder().encode(JSON.stringify(before)),
  );
  return btoa(String.fromCharCode(...new Uint8Array(hash)));
}

/** The claims with the per-second issue time left out, for comparing two encodes. */
function timeless(claims: Record<string, unknown>) {
  const { iat: _, jti: __, ...rest } = claims;
  return rest;
}

Deno.test("the user JWT verifies and carries the jti WebCrypto gives for its claims", async () => {
  const ours = decode(await encodeUserJwt("ada", userNkey, issuer, perms, { aud: "UNIBUS" }));
  const library = decode(await encodeUser("ada", userNkey, issuer, perms, { aud: "UNIBUS" }));
  assertEquals(ours.jti, await webCryptoJti(ours as unknown as Record<string, unknown>));
  assertEquals(
    timeless(ours as unknown as Record<string, unknown>),
    timeless(library as unknown as Record<string, unknown>),
  );
  assertEquals(ours.sub, userNkey);
  assertEquals(ours.iss, issuer.getPublicKey());
});

Deno.test("the callout response verifies and carries the jti WebCrypto gives for its claims", async () => {
  for (const answer of [{ jwt: "eyJ.x.y" }, { error: "user is revoked" }]) {
    const jwt = await encodeCalloutResponse(userNkey, server.getPublicKey(), issuer, answer);
    const ours = decode(jwt) as unknown as Record<string, unknown>;
    const library = decode(
      await encodeAuthorizationResponse(userNkey, server.getPublicKey(), issuer, answer, {}),
    ) as unknown as Record<string, unknown>;
    assertEquals(ours.jti, await webCryptoJti(ours));
    assertEquals(timeless(ours), timeless(library));
    assertEquals(ours.aud, server.getPublicKey());
  }
});

Deno.test("crypto.subtle.digest is WebCrypto's own again after each encode, thrown or not", async () => {
  const subtle = crypto.subtle as unknown as Record<string, unknown>;
  const before = subtle.digest;
  const own = Object.hasOwn(subtle, "digest");
  const unchanged = () => {
    assert(subtle.digest === before, "digest was not restored");
    assertEquals(Object.hasOwn(subtle, "digest"), own);
  };
  let inside: unknown = before;
  await withNativeJtiDigest(() => {
    inside = subtle.digest;
    return Promise.resolve();
  });
  assert(inside !== before, "the encode did not get the native digest");
  unchanged();
  await encodeUserJwt("ada", userNkey, issuer, perms, { aud: "UNIBUS" });
  unchanged();
  // A user key where the library wants an account: the library refuses.
  await assertRejects(
    () =>
      encodeUserJwt("ada", userNkey, NativeNkeyPair.generate(Prefix.User), perms, {
        aud: "UNIBUS",
      }),
    Error,
    "unexpected type",
  );
  unchanged();
  assertThrows(() =>
    withNativeJtiDigest(() => {
      throw new RangeError("thrown before any await");
    }), RangeError);
  unchanged();
});

Deno.test("inside an encode, SHA-512 equals WebCrypto's and other algorithms are WebCrypto's", async () => {
  const data = crypto.getRandomValues(new Uint8Array(1500));
  const web = async (alg: string) => new Uint8Array(await crypto.subtle.digest(alg, data));
  for (const alg of ["SHA-512", "SHA-256", "SHA-384"]) {
    const inside = await withNativeJtiDigest(() => crypto.subtle.digest(alg, data));
    assertEquals(new Uint8Array(inside), await web(alg), alg);
    const named = await withNativeJtiDigest(() => crypto.subtle.digest({ name: alg }, data));
    assertEquals(new Uint8Array(named), await web(alg), `${alg} by name`);
  }
  // A view into a larger buffer hashes the view only.
  const view = data.subarray(100, 900);
  const inside = await withNativeJtiDigest(() => crypto.subtle.digest("SHA-512", view));
  assertEquals(
    new Uint8Array(inside),
    new Uint8Array(await crypto.subtle.digest("SHA-512", view)),
  );
});
