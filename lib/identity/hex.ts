/**
 * Strict hex for keys and signatures: lowercase, even length, nothing else.
 * One spelling per value means a key compares equal as a string everywhere
 * (store rows, KV keys, log lines), so a differently-cased duplicate cannot
 * slip past a uniqueness check.
 *
 * @module
 */

const LOWER_HEX = /^(?:[0-9a-f]{2})*$/;
const ANY_CASE_HEX = /^(?:[0-9a-fA-F]{2})*$/;

/**
 * Lowercase hex of `bytes`.
 *
 * @example
 * ```ts
 * toHex(Uint8Array.of(0, 171)); // "00ab"
 * ```
 */
export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

/**
 * True when `s` is lowercase hex of exactly `byteLength` bytes (any even
 * length when `byteLength` is omitted).
 *
 * @example
 * ```ts
 * isHex("00ab", 2); // true
 * isHex("00AB");    // false: uppercase is not the canonical spelling
 * ```
 */
export function isHex(s: unknown, byteLength?: number): s is string {
  if (typeof s !== "string" || !LOWER_HEX.test(s)) return false;
  return byteLength === undefined || s.length === byteLength * 2;
}

/**
 * Bytes of the lowercase hex `s`; throws RangeError on anything else, or on a
 * length other than `byteLength` when given.
 *
 * @example
 * ```ts
 * fromHex("00ab"); // Uint8Array [0, 171]
 * ```
 */
export function fromHex(s: string, byteLength?: number): Uint8Array {
  if (!isHex(s, byteLength)) {
    throw new RangeError(
      byteLength === undefined
        ? "not lowercase hex of even length"
        : `not ${byteLength * 2} lowercase hex characters`,
    );
  }
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/**
 * Lowercases hex typed by a person (either case accepted), or returns null
 * when `s` is not hex of `byteLength` bytes. For user input only; stored and
 * wire values must already be lowercase.
 *
 * @example
 * ```ts
 * normalizeHexInput("00AB", 2); // "00ab"
 * normalizeHexInput("xyz", 2);  // null
 * ```
 */
export function normalizeHexInput(s: string, byteLength: number): string | null {
  if (!ANY_CASE_HEX.test(s) || s.length !== byteLength * 2) return null;
  return s.toLowerCase();
}
