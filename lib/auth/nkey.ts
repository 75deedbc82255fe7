/**
 * NATS nkeys backed by native Ed25519 (lib/crypto/ed25519.ts).
 *
 * The stock `@nats-io/nkeys` key pair signs with a pure-JS implementation that
 * re-derives the key from the seed on every call: each JWT the auth callout
 * minted cost ~56 ms. This key pair keeps the private key in a native key
 * object and implements the same `KeyPair` interface, so `@nats-io/jwt` and
 * nats.js use it unchanged; the nkey text encoding (base32 + CRC16) stays the
 * library's.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { Codec } from "@nats-io/nkeys/lib/codec.js";
import { type KeyPair, NKeysError, NKeysErrorCode, Prefix } from "@nats-io/nkeys";
import { generateSeed, keyPairFromSeed, verifySignature } from "../crypto/ed25519.ts";
import { toBase64Url } from "../e2e/bytes.ts";

export { Prefix };

const text = new TextDecoder();

/**
 * The nkey spelling of a raw Ed25519 public key, e.g. "U…" for a user.
 *
 * @example
 * ```ts
 * encodePublicNkey(Prefix.User, signPub); // "UA…"
 * ```
 */
export function encodePublicNkey(prefix: Prefix, publicKey: Uint8Array): string {
  return text.decode(Codec.encode(prefix, publicKey));
}

/**
 * The raw Ed25519 public key inside a public nkey of the expected kind;
 * throws when the prefix or checksum is wrong.
 *
 * @example
 * ```ts
 * const raw = decodePublicNkey(Prefix.User, "UA…");
 * ```
 */
export function decodePublicNkey(prefix: Prefix, nkey: string): Uint8Array {
  return Codec.decode(prefix, new TextEncoder().encode(nkey));
}

/** A `KeyPair` whose signatures are computed natively. */
export class NativeNkeyPair implements KeyPair {
  readonly #seed: Uint8Array;
  readonly #prefix: Prefix;
  readonly #signer;
  readonly publicNkey: string;

  /**
   * @example
   * ```ts
   * const issuer = new NativeNkeyPair(Prefix.Account, generateSeed());
   * issuer.getPublicKey(); // "A…"
   * ```
   */
  constructor(prefix: Prefix, seed: Uint8Array) {
    this.#prefix = prefix;
    this.#seed = seed.slice();
    this.#signer = keyPairFromSeed(seed);
    this.publicNkey = encodePublicNkey(prefix, this.#signer.publicKey);
  }

  /** A fresh key pair of `prefix` from the system CSPRNG. */
  static generate(prefix: Prefix): NativeNkeyPair {
    return new NativeNkeyPair(prefix, generateSeed());
  }

  /** The raw 32-byte Ed25519 public key. */
  get rawPublicKey(): Uint8Array {
    return this.#signer.publicKey;
  }

  getPublicKey(): string {
    return this.publicNkey;
  }

  getPrivateKey(): Uint8Array {
    // The JWT library calls this only to assert that the key can sign.
    return Codec.encode(Prefix.Private, this.#seed);
  }

  getSeed(): Uint8Array {
    return Codec.encodeSeed(this.#prefix, this.#seed);
  }

  sign(input: Uint8Array): Uint8Array {
    return this.#signer.sign(input);
  }

  verify(input: Uint8Array, sig: Uint8Array): boolean {
    return verifySignature(this.#signer.publicKey, input, sig);
  }

  clear(): void {
    this.#seed.fill(0);
  }

  seal(): Uint8Array {
    throw new NKeysError(NKeysErrorCode.InvalidNKeyOperation);
  }

  open(): Uint8Array | null {
    throw new NKeysError(NKeysErrorCode.InvalidNKeyOperation);
  }
}

/** What nats.js sends for nkey authentication. */
export interface NkeyCredentials {
  nkey: string;
  sig: string;
}

/**
 * A nats.js `authenticator` for the nkey users in nats-server's own config
 * (serve's internal identities): nats-server itself checks these, over the
 * raw nonce. The signature goes out as unpadded URL-safe base64, the encoding
 * nats-server and Go clients use. Never use it with a user identity: see
 * {@linkcode busUserAuthenticator}.
 *
 * @example
 * ```ts
 * const nc = await connect({ servers, authenticator: nkeyAuthenticatorFor(internal) });
 * ```
 */
export function nkeyAuthenticatorFor(kp: NativeNkeyPair): (nonce?: string) => NkeyCredentials {
  return (nonce?: string) => ({
    nkey: kp.getPublicKey(),
    sig: nonce ? toBase64Url(kp.sign(new TextEncoder().encode(nonce))) : "",
  });
}

/** What a bus user signs to log in: this context, then the server's nonce. */
export const NATS_AUTH_CONTEXT = "unibus/nats-auth/v1\n";

// nats-server's nonces are short base64url strings; anything else is a
// server (or a man in the middle) fishing for a signature over chosen text.
const NONCE = /^[A-Za-z0-9_-]{8,64}$/;

/**
 * The bytes a bus user signs to prove its key to the auth callout.
 *
 * @example
 * ```ts
 * natsAuthMessage("6d9cL3Q2vE4ZRtA"); // "unibus/nats-auth/v1\n6d9cL3Q2vE4ZRtA" as UTF-8
 * ```
 */
export function natsAuthMessage(nonce: string): Uint8Array {
  return new TextEncoder().encode(NATS_AUTH_CONTEXT + nonce);
}

/**
 * The nats.js `authenticator` of a bus user (a unibus identity). The identity
 * key also signs membership changes and control-plane requests, so it never
 * signs the server's nonce bare: a malicious server could send any text as
 * its "nonce" and collect a signature over, say, a membership change. It
 * signs {@linkcode natsAuthMessage} instead, which no other unibus message
 * starts with, and refuses nonces that are not nonces. The auth callout
 * checks exactly that (nats-server does not check callout users itself).
 *
 * @example
 * ```ts
 * const nc = await connect({ servers, authenticator: busUserAuthenticator(kp) });
 * ```
 */
export function busUserAuthenticator(kp: NativeNkeyPair): (nonce?: string) => NkeyCredentials {
  return (nonce?: string) => ({
    nkey: kp.getPublicKey(),
    sig: nonce && NONCE.test(nonce) ? toBase64Url(kp.sign(natsAuthMessage(nonce))) : "",
  });
}

/**
 * Decodes base64 in either alphabet, padded or not: nats.js sends padded
 * standard base64, Go clients unpadded URL-safe, and both are legitimate.
 * Returns null for anything else.
 *
 * @example
 * ```ts
 * decodeAnyBase64("AQID"); // Uint8Array [1, 2, 3]
 * ```
 */
export function decodeAnyBase64(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(text)) return null;
  const bare = text.replace(/=+$/, "");
  if (bare.length % 4 === 1) return null;
  // Native: the auth callout decodes each ~1.3 kB request JWT with this, and
  // atob plus a per-character copy cost ~50 µs of every connect. Buffer's
  // decoder is lenient (it skips characters outside the alphabet), which is
  // why the alphabet is checked above first.
  return new Uint8Array(Buffer.from(bare, "base64"));
}
