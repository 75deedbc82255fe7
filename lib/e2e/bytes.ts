/**
 * Byte-level building blocks of the wire formats in docs/protocol.md: every
 * integer is big-endian, every variable-length string is UTF-8 prefixed by
 * its length as a u16.
 *
 * @module
 */

const te = new TextEncoder();

/** UTF-8 bytes of `s`. */
export function utf8(s: string): Uint8Array {
  return te.encode(s);
}

/**
 * Concatenates byte arrays.
 *
 * @example
 * ```ts
 * concatBytes(Uint8Array.of(1), Uint8Array.of(2)); // Uint8Array [1, 2]
 * ```
 */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** `n` as 4 big-endian bytes. */
export function u32(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`${n} is not a u32`);
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

/** `n` as 2 big-endian bytes. */
export function u16(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new RangeError(`${n} is not a u16`);
  return Uint8Array.of(n >> 8, n & 0xff);
}

/**
 * A string as u16 length + UTF-8 bytes, so two fields can never run together
 * ("ab"+"c" and "a"+"bc" encode differently).
 *
 * @example
 * ```ts
 * lengthPrefixed("r1"); // Uint8Array [0, 2, 0x72, 0x31]
 * ```
 */
export function lengthPrefixed(s: string): Uint8Array {
  const b = utf8(s);
  return concatBytes(u16(b.length), b);
}

// One hex implementation for the whole code base (strict: lowercase only).
export { fromHex, toHex } from "../identity/hex.ts";

/** Standard base64 with padding. */
export function toBase64(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

/**
 * Unpadded base64url of `bytes`.
 *
 * @example
 * ```ts
 * toBase64Url(new Uint8Array([0xfb, 0xff])); // "-_8"
 * ```
 */
export function toBase64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64url");
}

/** Bytes of standard padded base64; throws on anything else. */
export function fromBase64(text: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new RangeError("not padded base64");
  }
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** Sequential reader over a byte array; throws `RangeError` when input runs out. */
export class ByteReader {
  #view: DataView;
  #bytes: Uint8Array;
  offset = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Bytes left. */
  get remaining(): number {
    return this.#bytes.length - this.offset;
  }

  take(n: number): Uint8Array {
    if (n < 0 || this.offset + n > this.#bytes.length) throw new RangeError("truncated");
    const out = this.#bytes.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }

  u8(): number {
    return this.take(1)[0];
  }

  u16(): number {
    const v = this.#view.getUint16(this.offset);
    this.take(2);
    return v;
  }

  u32(): number {
    if (this.offset + 4 > this.#bytes.length) throw new RangeError("truncated");
    const v = this.#view.getUint32(this.offset);
    this.offset += 4;
    return v;
  }
}
