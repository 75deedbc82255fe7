/**
 * Sealed boxes, byte-for-byte libsodium's `crypto_box_seal`: an ephemeral
 * X25519 key, the box key `HSalsa20(X25519(esk, rpk), 0)`, XSalsa20-Poly1305
 * with nonce `BLAKE2b-192(epk || rpk)`; output `epk || ciphertext`. Anyone
 * can seal to a public key; only its owner can open, and learns nothing about
 * the sender (unibus signs sealed room keys separately for that).
 *
 * X25519 is native (node:crypto: about 0.2 ms for the two scalar
 * multiplications of a seal against 1.1 ms for @noble's, measured in
 * scripts/bench/primitives.ts), which is most of what sealing a room key to
 * every member of a large room costs; HSalsa20, XSalsa20-Poly1305 and BLAKE2b
 * are @noble's. tests/e2e_interop_test.ts opens ours with libsodium and the
 * reverse.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { hsalsa, xsalsa20poly1305 } from "@noble/ciphers/salsa.js";
import { blake2b } from "@noble/hashes/blake2.js";
import { concatBytes } from "./bytes.ts";

/** Bytes a sealed box adds to its plaintext. */
export const SEAL_OVERHEAD = 32 + 16;

// "expand 32-byte k", the Salsa20 constant, as little-endian words.
const SIGMA = new Uint32Array([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]);

// DER prefixes of an X25519 public key (SPKI) and private key (PKCS#8).
const SPKI_PREFIX = Buffer.from("302a300506032b656e032100", "hex");
const PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");

function publicKeyObject(pub: Uint8Array): KeyObject {
  if (pub.length !== 32) throw new RangeError("an X25519 public key is 32 bytes");
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: "der", type: "spki" });
}

function privateKeyObject(priv: Uint8Array): KeyObject {
  return createPrivateKey({
    key: Buffer.concat([PKCS8_PREFIX, priv]),
    format: "der",
    type: "pkcs8",
  });
}

function rawPublic(priv: KeyObject): Uint8Array {
  const der = createPublicKey(priv).export({ format: "der", type: "spki" });
  return new Uint8Array(der.subarray(der.length - 32));
}

// X25519(priv, pub). A low-order peer key gives the all-zero output, which
// libsodium's crypto_scalarmult refuses: refused here too (OpenSSL throws,
// and the check stands in case a build does not).
function sharedSecret(priv: KeyObject, pub: Uint8Array): Uint8Array {
  const out = new Uint8Array(diffieHellman({ privateKey: priv, publicKey: publicKeyObject(pub) }));
  if (out.every((b) => b === 0)) throw new RangeError("low-order X25519 public key");
  return out;
}

function boxKey(shared: Uint8Array): Uint8Array {
  const out = new Uint32Array(8);
  hsalsa(
    SIGMA,
    new Uint32Array(shared.slice().buffer),
    new Uint32Array(4),
    out,
  );
  return new Uint8Array(out.buffer);
}

function sealNonce(epk: Uint8Array, rpk: Uint8Array): Uint8Array {
  return blake2b(concatBytes(epk, rpk), { dkLen: 24 });
}

/**
 * Seals `plaintext` to the X25519 public key `recipient`.
 *
 * `ephemeralSecret` exists only so test vectors can be reproduced
 * (scripts/gen_e2e_vectors.ts): a sealed box's secrecy rests on a fresh
 * ephemeral key per box, so real callers leave it out. A caller's key is
 * neither kept nor zeroed; a generated one never leaves its native key
 * object.
 *
 * @example
 * ```ts
 * const box = sealBox(roomKey, memberKexPub);
 * ```
 */
export function sealBox(
  plaintext: Uint8Array,
  recipient: Uint8Array,
  ephemeralSecret?: Uint8Array,
): Uint8Array {
  if (ephemeralSecret !== undefined && ephemeralSecret.length !== 32) {
    throw new RangeError("an X25519 secret key is 32 bytes");
  }
  // A generated ephemeral key never leaves its native key object.
  const esk = ephemeralSecret === undefined
    ? generateKeyPairSync("x25519").privateKey
    : privateKeyObject(ephemeralSecret);
  const epk = rawPublic(esk);
  const key = boxKey(sharedSecret(esk, recipient));
  const ct = xsalsa20poly1305(key, sealNonce(epk, recipient)).encrypt(plaintext);
  key.fill(0);
  return concatBytes(epk, ct);
}

/**
 * Opens a sealed box with the recipient's key pair; null when it was not
 * sealed to this key or was altered.
 *
 * @example
 * ```ts
 * const roomKey = openBox(box, myKexPub, myKexPriv);
 * ```
 */
export function openBox(
  box: Uint8Array,
  recipientPub: Uint8Array,
  recipientPriv: Uint8Array,
): Uint8Array | null {
  if (box.length < SEAL_OVERHEAD) return null;
  const epk = box.subarray(0, 32);
  try {
    const key = boxKey(sharedSecret(privateKeyObject(recipientPriv), epk));
    return xsalsa20poly1305(key, sealNonce(epk, recipientPub)).decrypt(box.subarray(32));
  } catch {
    return null;
  }
}
