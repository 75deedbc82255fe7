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
// Table lookups: hex conversions run several times per received packet.
const BYTE_HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));
/** Value of a lowercase hex digit by char code; -1 (or undefined past 127) for anything else. */
const DIGIT = new Int8Array(128).fill(-1);
for (let c = 0; c < 16; c++) DIGIT["0123456789abcdef".charCodeAt(c)] = c;

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
  for (let i = 0; i < bytes.length; i++) out += BYTE_HEX[bytes[i]];
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
  const bad = () =>
    new RangeError(
      byteLength === undefined
        ? "not lowercase hex of even length"
        : `not ${byteLength * 2} lowercase hex characters`,
    );
  if (
    typeof s !== "string" || s.length % 2 !== 0 ||
    (byteLength !== undefined && s.length !== byteLength * 2)
  ) {
    throw bad();
  }
  // Checked digit by digit here (what isHex's pattern says): this runs
  // several times per request and reply.
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) {
    const hi = DIGIT[s.charCodeAt(2 * i)];
    const lo = DIGIT[s.charCodeAt(2 * i + 1)];
    if (!(hi >= 0 && lo >= 0)) throw bad();
    out[i] = (hi << 4) | lo;
  }
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
