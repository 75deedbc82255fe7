/**
 * A blob's encryption: each blob has its own random key, which travels only
 * end-to-end encrypted inside a room message; the ciphertext is bound to the
 * room, so a blob cannot be passed off as another room's.
 *
 * @module
 */

import { randomBytes } from "node:crypto";
import { aeadDecrypt, aeadEncrypt, NONCE_BYTES } from "../e2e/aead.ts";
import { concatBytes, fromBase64, lengthPrefixed, toBase64, utf8 } from "../e2e/bytes.ts";
import type { BlobRef } from "./types.ts";
import { MembershipVerificationError } from "./errors.ts";

function blobAad(roomId: string): Uint8Array {
  return concatBytes(utf8("unibus/blob/v1"), lengthPrefixed(roomId));
}

/**
 * `bytes` sealed under a fresh key for room `roomId`: the ciphertext to
 * store, and the key (base64) to share.
 *
 * @example
 * ```ts
 * const { sealed, key } = sealBlob(roomId, new TextEncoder().encode("report"));
 * ```
 */
export function sealBlob(roomId: string, bytes: Uint8Array): { sealed: Uint8Array; key: string } {
  const key = new Uint8Array(randomBytes(32));
  const nonce = new Uint8Array(randomBytes(NONCE_BYTES));
  const sealed = concatBytes(nonce, aeadEncrypt(key, nonce, bytes, blobAad(roomId)));
  return { sealed, key: toBase64(key) };
}

/**
 * The plaintext of a stored blob; throws if it was altered or is another
 * room's.
 *
 * @example
 * ```ts
 * const bytes = openBlob(roomId, ref, sealed);
 * ```
 */
export function openBlob(roomId: string, blob: BlobRef, sealed: Uint8Array): Uint8Array {
  const plain = aeadDecrypt(
    fromBase64(blob.key),
    sealed.subarray(0, NONCE_BYTES),
    sealed.subarray(NONCE_BYTES),
    blobAad(roomId),
  );
  if (!plain) {
    throw new MembershipVerificationError(
      `blob ${blob.id} does not decrypt: altered or not this room's`,
    );
  }
  return plain;
}
