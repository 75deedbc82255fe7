/**
 * Signed control-plane requests, shared by the client (which signs) and the
 * server (which verifies). The wire format is specified in
 * `docs/protocol.md` ("Signed control-plane requests"); this file is its
 * reference implementation and `tests/fixtures/request_signing_vectors.json`
 * pins it down byte for byte.
 *
 * The canonical string (UTF-8, `\n` separated, no trailing newline):
 *
 * ```text
 * unibus-request-v1
 * METHOD             upper case
 * PATH_AND_QUERY     exactly as sent in the request line
 * TIMESTAMP          decimal ms since the Unix epoch, no leading zeros
 * NONCE              16-64 chars of [A-Za-z0-9_-]
 * BODY_SHA256        lowercase hex of SHA-256(body); of "" when there is no body
 * ```
 *
 * The signature is pure Ed25519 (RFC 8032) over those bytes, not over a hash
 * of them. Replay protection (nonce memory) and the allowlist live on the
 * server (`server/http/request_auth.ts`); this module only proves who signed
 * what, and when they claimed to.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash, randomBytes } from "node:crypto";
import { type Ed25519KeyPair, verifySignature } from "../crypto/ed25519.ts";
import { toBase64Url } from "../e2e/bytes.ts";

/** First line of the canonical string; bumping it retires every old signature. */
export const REQUEST_SIGNING_VERSION = "unibus-request-v1";

/** Header names, lower case as `Headers` reports them. */
export const AUTH_HEADERS = {
  key: "x-unibus-key",
  timestamp: "x-unibus-timestamp",
  nonce: "x-unibus-nonce",
  signature: "x-unibus-signature",
} as const;

/** Default accepted clock difference between signer and verifier, in ms. */
export const DEFAULT_SKEW_MS = 30_000;

const KEY_HEX = /^[0-9a-f]{64}$/;
const NONCE = /^[A-Za-z0-9_-]{16,64}$/;
// No leading zeros and at most 16 digits (Number.MAX_SAFE_INTEGER has 16), so
// every accepted string is the one String(n) gives back.
const TIMESTAMP = /^(?:0|[1-9][0-9]{0,15})$/;
// 64 bytes encode to 86 base64url characters without padding.
const SIGNATURE_B64URL = /^[A-Za-z0-9_-]{86}$/;
// A path as it may appear in a request line: no whitespace or controls, which
// would let one canonical line smuggle in another.
// deno-lint-ignore no-control-regex
const PATH_AND_QUERY = /^\/[^\s\u0000-\u001f\u007f]*$/;

const encoder = new TextEncoder();

/** Why a signed request was refused; each code maps to one HTTP answer. */
export type RequestAuthErrorCode =
  /** Auth headers missing or malformed. */
  | "unauthenticated"
  /** Timestamp outside the skew window. */
  | "stale_request"
  /** The signature does not verify for the claimed key over this request. */
  | "bad_signature";

/**
 * A request whose signature could not be accepted. The message is for logs;
 * callers answer with the code only.
 *
 * @example
 * ```ts
 * try {
 *   verifyRequestSignature(input);
 * } catch (e) {
 *   if (e instanceof RequestAuthError) console.log(e.code);
 * }
 * ```
 */
export class RequestAuthError extends Error {
  override name = "RequestAuthError";
  constructor(readonly code: RequestAuthErrorCode, message: string) {
    super(message);
  }
}

/** The parts of a request that the signature covers. */
export interface RequestToSign {
  /** HTTP method; upper-cased before signing. */
  method: string;
  /** Path and query exactly as in the request line, e.g. `/v1/rooms?x=1`. */
  pathAndQuery: string;
  /** Raw body bytes; none means the empty body. */
  body?: Uint8Array;
}

/** Everything {@linkcode canonicalRequest} needs. */
export interface CanonicalRequestInput extends RequestToSign {
  /** Milliseconds since the Unix epoch. */
  timestamp: number;
  nonce: string;
}

/** What the auth headers claim, parsed and format-checked but not yet verified. */
export interface RequestAuthHeaders {
  /** Signer's Ed25519 public key, 64 lowercase hex. */
  key: string;
  publicKey: Uint8Array;
  timestamp: number;
  nonce: string;
  signature: Uint8Array;
}

/** A request whose signature verified: who signed it, when, with which nonce. */
export interface VerifiedRequest {
  /** Signer's Ed25519 public key, 64 lowercase hex. */
  key: string;
  timestamp: number;
  nonce: string;
}

/**
 * Lowercase hex SHA-256 of `body` (of the empty string when absent).
 *
 * @example
 * ```ts
 * bodySha256Hex(); // "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
 * ```
 */
export function bodySha256Hex(body?: Uint8Array): string {
  return createHash("sha256").update(body ?? new Uint8Array(0)).digest("hex");
}

/**
 * The canonical string a request signature covers, as a string; sign its
 * UTF-8 bytes. Throws a TypeError on input the verifier would refuse, so a
 * client learns about a bad path or nonce locally instead of as a 401.
 *
 * @example
 * ```ts
 * canonicalRequest({
 *   method: "GET",
 *   pathAndQuery: "/v1/rooms",
 *   timestamp: 1700000000000,
 *   nonce: "AAECAwQFBgcICQoLDA0ODw",
 * });
 * // "unibus-request-v1\nGET\n/v1/rooms\n1700000000000\nAAECAwQFBgcICQoLDA0ODw\ne3b0c4…b855"
 * ```
 */
export function canonicalRequest(input: CanonicalRequestInput): string {
  const method = input.method.toUpperCase();
  // A newline in any field would let two different requests share one canonical string.
  if (!/^[A-Z]+$/.test(method)) throw new TypeError("method must be letters only");
  if (!PATH_AND_QUERY.test(input.pathAndQuery)) {
    throw new TypeError("pathAndQuery must start with / and contain no whitespace");
  }
  if (!Number.isSafeInteger(input.timestamp) || input.timestamp < 0) {
    throw new TypeError("timestamp must be a non-negative integer of milliseconds");
  }
  if (!NONCE.test(input.nonce)) throw new TypeError("nonce must be 16-64 chars of [A-Za-z0-9_-]");
  return [
    REQUEST_SIGNING_VERSION,
    method,
    input.pathAndQuery,
    String(input.timestamp),
    input.nonce,
    bodySha256Hex(input.body),
  ].join("\n");
}

/**
 * A fresh nonce: 16 CSPRNG bytes as unpadded base64url (22 characters).
 *
 * @example
 * ```ts
 * const nonce = newNonce(); // e.g. "q3Jx9Zb0c1sVbXW2m7oA4g"
 * ```
 */
export function newNonce(): string {
  return toBase64Url(new Uint8Array(randomBytes(16)));
}

/**
 * Signs a request and returns the four auth headers to send with it.
 * `now` and `nonce` exist for test vectors; leave them unset otherwise.
 *
 * @example
 * ```ts
 * const headers = signRequest(keyPairFromSeed(seed), {
 *   method: "POST",
 *   pathAndQuery: "/v1/rooms",
 *   body: new TextEncoder().encode('{"id":"ops"}'),
 * });
 * ```
 */
export function signRequest(
  signer: Ed25519KeyPair,
  req: RequestToSign & { now?: number; nonce?: string },
): Record<string, string> {
  const timestamp = req.now ?? Date.now();
  const nonce = req.nonce ?? newNonce();
  const canonical = canonicalRequest({ ...req, timestamp, nonce });
  const signature = signer.sign(encoder.encode(canonical));
  return {
    [AUTH_HEADERS.key]: Buffer.from(signer.publicKey).toString("hex"),
    [AUTH_HEADERS.timestamp]: String(timestamp),
    [AUTH_HEADERS.nonce]: nonce,
    [AUTH_HEADERS.signature]: toBase64Url(signature),
  };
}

/**
 * The path and query `fetch` will put in the request line for `url`: the
 * parsed URL's path plus query, keeping a bare trailing `?` that
 * `URL.search` would drop.
 *
 * @example
 * ```ts
 * pathAndQueryOfUrl("http://127.0.0.1:8470/v1/rooms?x=1#top"); // "/v1/rooms?x=1"
 * ```
 */
export function pathAndQueryOfUrl(url: string | URL): string {
  const u = new URL(url);
  const bareQuestionMark = u.search === "" && u.href.replace(/#.*$/s, "").endsWith("?");
  return u.pathname + (bareQuestionMark ? "?" : u.search);
}

/**
 * `fetch` with the request signed by `signer`. The body must be bytes or a
 * string (a stream cannot be hashed before it is sent).
 *
 * @example
 * ```ts
 * const res = await signedFetch(kp, "http://127.0.0.1:8470/v1/rooms", {
 *   method: "POST",
 *   body: JSON.stringify({ id: "ops" }),
 * });
 * ```
 */
export async function signedFetch(
  signer: Ed25519KeyPair,
  url: string | URL,
  init: Omit<RequestInit, "body"> & { body?: Uint8Array | string | null } = {},
): Promise<Response> {
  const body = typeof init.body === "string" ? encoder.encode(init.body) : init.body ?? undefined;
  if (body !== undefined && !(body instanceof Uint8Array)) {
    throw new TypeError("signedFetch needs the body as a string or Uint8Array");
  }
  const method = (init.method ?? "GET").toUpperCase();
  const headers = new Headers(init.headers);
  const signed = signRequest(signer, { method, pathAndQuery: pathAndQueryOfUrl(url), body });
  for (const [k, v] of Object.entries(signed)) headers.set(k, v);
  return await fetch(url, { ...init, method, headers, body: body as BodyInit | undefined });
}

function malformed(message: string): RequestAuthError {
  return new RequestAuthError("unauthenticated", message);
}

/**
 * Reads and format-checks the four auth headers; throws
 * {@linkcode RequestAuthError} "unauthenticated" when one is missing or malformed.
 * Nothing here is verified yet.
 *
 * @example
 * ```ts
 * const claimed = parseAuthHeaders(req.headers);
 * ```
 */
export function parseAuthHeaders(headers: Headers): RequestAuthHeaders {
  const key = headers.get(AUTH_HEADERS.key);
  const ts = headers.get(AUTH_HEADERS.timestamp);
  const nonce = headers.get(AUTH_HEADERS.nonce);
  const sig = headers.get(AUTH_HEADERS.signature);
  if (key === null || ts === null || nonce === null || sig === null) {
    throw malformed("auth headers missing");
  }
  // Lower case only: the allowlist is keyed by lowercase hex, and one key
  // with two spellings would get two nonce namespaces.
  if (!KEY_HEX.test(key)) throw malformed("x-unibus-key is not 64 lowercase hex");
  if (!TIMESTAMP.test(ts)) throw malformed("x-unibus-timestamp is not decimal milliseconds");
  const timestamp = Number(ts);
  if (!Number.isSafeInteger(timestamp)) throw malformed("x-unibus-timestamp is out of range");
  if (!NONCE.test(nonce)) throw malformed("x-unibus-nonce is not 16-64 base64url characters");
  if (!SIGNATURE_B64URL.test(sig)) throw malformed("x-unibus-signature is not 86 base64url chars");
  const signature = new Uint8Array(Buffer.from(sig, "base64url"));
  // Non-zero trailing bits decode to the same bytes; refusing them keeps one
  // spelling per signature, so logs and caches never see aliases.
  if (signature.length !== 64 || toBase64Url(signature) !== sig) {
    throw malformed("x-unibus-signature is not canonical base64url of 64 bytes");
  }
  return {
    key,
    publicKey: new Uint8Array(Buffer.from(key, "hex")),
    timestamp,
    nonce,
    signature,
  };
}

/**
 * Throws {@linkcode RequestAuthError} "stale_request" unless
 * `|now - timestamp| < skewMs`. The bound is strict so that a nonce kept until
 * `timestamp + skewMs` (exclusive, as the store prunes) is still remembered
 * at the last instant the timestamp passes this check.
 *
 * @example
 * ```ts
 * assertFresh(claimed.timestamp, Date.now(), 30_000);
 * ```
 */
export function assertFresh(timestamp: number, now: number, skewMs: number): void {
  if (!(Math.abs(now - timestamp) < skewMs)) {
    throw new RequestAuthError("stale_request", `timestamp is ${now - timestamp} ms off`);
  }
}

/**
 * Verifies a request's auth headers against the request itself: well-formed
 * headers, fresh timestamp, and an Ed25519 signature by the claimed key over
 * the canonical string. Throws {@linkcode RequestAuthError} with the first
 * failing check's code. Does not consult the allowlist or remember the nonce:
 * that is the server's job, after this succeeds.
 *
 * @example
 * ```ts
 * const { key, nonce, timestamp } = verifyRequestSignature({
 *   method: req.method,
 *   pathAndQuery: "/v1/rooms",
 *   headers: req.headers,
 *   body,
 * });
 * ```
 */
export function verifyRequestSignature(
  req: RequestToSign & { headers: Headers },
  opts: { now?: number; skewMs?: number } = {},
): VerifiedRequest {
  const claimed = parseAuthHeaders(req.headers);
  assertFresh(claimed.timestamp, opts.now ?? Date.now(), opts.skewMs ?? DEFAULT_SKEW_MS);
  let canonical: string;
  try {
    canonical = canonicalRequest({ ...req, timestamp: claimed.timestamp, nonce: claimed.nonce });
  } catch (e) {
    // A method or path the signer could never have signed.
    throw malformed(`request line cannot be canonicalised: ${(e as Error).message}`);
  }
  // verifySignature also refuses small-order keys, which would otherwise let
  // an all-zero signature "verify" for any request.
  if (!verifySignature(claimed.publicKey, encoder.encode(canonical), claimed.signature)) {
    throw new RequestAuthError("bad_signature", "signature does not verify");
  }
  return { key: claimed.key, timestamp: claimed.timestamp, nonce: claimed.nonce };
}
