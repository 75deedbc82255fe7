import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import {
  AUTH_HEADERS,
  bodySha256Hex,
  canonicalRequest,
  newNonce,
  parseAuthHeaders,
  pathAndQueryOfUrl,
  RequestAuthError,
  type RequestToSign,
  signRequest,
  verifyRequestSignature,
} from "../lib/auth/request_signing.ts";
import { generateSeed, keyPairFromSeed } from "../lib/crypto/ed25519.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "./helpers/assert.ts";

interface Vector {
  name: string;
  seedHex: string;
  publicKeyHex: string;
  method: string;
  pathAndQuery: string;
  timestamp: number;
  nonce: string;
  bodyUtf8: string;
  bodySha256Hex: string;
  canonical: string;
  canonicalSha256Hex: string;
  signatureHex: string;
  signatureBase64url: string;
  headers: Record<string, string>;
}

const { vectors } = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/request_signing_vectors.json", import.meta.url)),
) as { vectors: Vector[] };

const enc = new TextEncoder();
const hex = (s: string) => new Uint8Array(Buffer.from(s, "hex"));

Deno.test("test vectors: canonical string, body hash and signature match byte for byte", () => {
  assert(vectors.length >= 2, "the fixture holds the documented vectors");
  for (const v of vectors) {
    const kp = keyPairFromSeed(hex(v.seedHex));
    const body = enc.encode(v.bodyUtf8);
    assertEquals(Buffer.from(kp.publicKey).toString("hex"), v.publicKeyHex, v.name);
    assertEquals(bodySha256Hex(body), v.bodySha256Hex, v.name);
    const canonical = canonicalRequest({ ...v, body });
    assertEquals(canonical, v.canonical, v.name);
    assertEquals(
      createHash("sha256").update(canonical).digest("hex"),
      v.canonicalSha256Hex,
      v.name,
    );
    const headers = signRequest(kp, {
      method: v.method,
      pathAndQuery: v.pathAndQuery,
      body,
      now: v.timestamp,
      nonce: v.nonce,
    });
    assertEquals(headers, v.headers, v.name);
    assertEquals(
      Buffer.from(headers[AUTH_HEADERS.signature], "base64url").toString("hex"),
      v.signatureHex,
      v.name,
    );
    const verified = verifyRequestSignature(
      { method: v.method, pathAndQuery: v.pathAndQuery, body, headers: new Headers(v.headers) },
      { now: v.timestamp },
    );
    assertEquals(verified, { key: v.publicKeyHex, timestamp: v.timestamp, nonce: v.nonce });
  }
});

Deno.test("an absent body hashes like the empty body", () => {
  assertEquals(bodySha256Hex(), bodySha256Hex(new Uint8Array(0)));
  assertEquals(
    bodySha256Hex(),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
});

Deno.test("the method is upper-cased before signing", () => {
  const base = { pathAndQuery: "/v1/x", timestamp: 1, nonce: "A".repeat(22) };
  assertEquals(
    canonicalRequest({ ...base, method: "post" }),
    canonicalRequest({ ...base, method: "POST" }),
  );
});

Deno.test("canonicalRequest refuses fields that could forge an extra line", () => {
  const ok = { method: "GET", pathAndQuery: "/v1/x", timestamp: 1, nonce: "A".repeat(22) };
  assertThrows(() => canonicalRequest({ ...ok, method: "GET\nPOST" }), TypeError);
  assertThrows(() => canonicalRequest({ ...ok, pathAndQuery: "/v1\n/x" }), TypeError);
  assertThrows(() => canonicalRequest({ ...ok, pathAndQuery: "v1/x" }), TypeError);
  assertThrows(() => canonicalRequest({ ...ok, timestamp: 1.5 }), TypeError);
  assertThrows(() => canonicalRequest({ ...ok, timestamp: -1 }), TypeError);
  assertThrows(() => canonicalRequest({ ...ok, nonce: "short" }), TypeError);
  assertThrows(() => canonicalRequest({ ...ok, nonce: "A".repeat(65) }), TypeError);
  assertThrows(() => canonicalRequest({ ...ok, nonce: "A".repeat(21) + "=" }), TypeError);
});

Deno.test("fresh nonces are 22 base64url characters and do not repeat", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const n = newNonce();
    assertMatch(n, /^[A-Za-z0-9_-]{22}$/);
    seen.add(n);
  }
  assertEquals(seen.size, 100);
});

Deno.test("pathAndQueryOfUrl gives what fetch puts in the request line", () => {
  assertEquals(pathAndQueryOfUrl("http://h:1/v1/rooms?x=1#frag"), "/v1/rooms?x=1");
  assertEquals(pathAndQueryOfUrl("http://h:1/v1/rooms?"), "/v1/rooms?");
  assertEquals(pathAndQueryOfUrl("http://h:1"), "/");
  assertEquals(pathAndQueryOfUrl("http://h/a b"), "/a%20b");
});

const signer = keyPairFromSeed(generateSeed());
const NOW = 1_700_000_000_000;
const original: RequestToSign = {
  method: "POST",
  pathAndQuery: "/v1/rooms/ops/members?role=admin",
  body: enc.encode('{"signPub":"ab"}'),
};

function signed(req: RequestToSign = original) {
  return new Headers(signRequest(signer, { ...req, now: NOW }));
}

function refusal(fn: () => unknown): string {
  return assertThrows(fn, RequestAuthError).code;
}

Deno.test("a signed request round-trips through verification", () => {
  const headers = signed();
  const got = verifyRequestSignature({ ...original, headers }, { now: NOW });
  assertEquals(got.key, Buffer.from(signer.publicKey).toString("hex"));
  assertEquals(got.timestamp, NOW);
  assertEquals(got.nonce, headers.get(AUTH_HEADERS.nonce));
});

Deno.test("changing any signed part of the request fails verification", () => {
  const headers = signed();
  const verify = (req: RequestToSign, h = headers) =>
    refusal(() => verifyRequestSignature({ ...req, headers: h }, { now: NOW }));
  assertEquals(verify({ ...original, method: "PUT" }), "bad_signature", "method");
  assertEquals(
    verify({ ...original, pathAndQuery: "/v1/rooms/ops/members/x?role=admin" }),
    "bad_signature",
    "path",
  );
  assertEquals(
    verify({ ...original, pathAndQuery: "/v1/rooms/ops/members?role=member" }),
    "bad_signature",
    "query",
  );
  assertEquals(
    verify({ ...original, pathAndQuery: "/v1/rooms/ops/members" }),
    "bad_signature",
    "query dropped",
  );
  assertEquals(verify({ ...original, body: enc.encode('{"signPub":"ac"}') }), "bad_signature");
  assertEquals(verify({ ...original, body: undefined }), "bad_signature", "body dropped");

  const ts = new Headers(headers);
  ts.set(AUTH_HEADERS.timestamp, String(NOW + 1));
  assertEquals(verify(original, ts), "bad_signature", "timestamp");

  const nonce = new Headers(headers);
  nonce.set(AUTH_HEADERS.nonce, newNonce());
  assertEquals(verify(original, nonce), "bad_signature", "nonce");

  const other = keyPairFromSeed(generateSeed());
  const key = new Headers(headers);
  key.set(AUTH_HEADERS.key, Buffer.from(other.publicKey).toString("hex"));
  assertEquals(verify(original, key), "bad_signature", "key swapped");
});

Deno.test("missing or malformed auth headers are unauthenticated, not bad signatures", () => {
  const good = signed();
  const variants: Array<[string, (h: Headers) => void]> = [
    ["no key", (h) => h.delete(AUTH_HEADERS.key)],
    ["no timestamp", (h) => h.delete(AUTH_HEADERS.timestamp)],
    ["no nonce", (h) => h.delete(AUTH_HEADERS.nonce)],
    ["no signature", (h) => h.delete(AUTH_HEADERS.signature)],
    ["upper-case key", (h) => h.set(AUTH_HEADERS.key, h.get(AUTH_HEADERS.key)!.toUpperCase())],
    ["short key", (h) => h.set(AUTH_HEADERS.key, "ab".repeat(31))],
    ["timestamp with leading zero", (h) => h.set(AUTH_HEADERS.timestamp, "0" + NOW)],
    ["timestamp not decimal", (h) => h.set(AUTH_HEADERS.timestamp, "1.7e12")],
    ["timestamp too large", (h) => h.set(AUTH_HEADERS.timestamp, "9".repeat(16))],
    ["nonce too short", (h) => h.set(AUTH_HEADERS.nonce, "abc")],
    ["nonce with padding", (h) => h.set(AUTH_HEADERS.nonce, "AAECAwQFBgcICQoLDA0ODw==")],
    [
      "padded signature",
      (h) => h.set(AUTH_HEADERS.signature, h.get(AUTH_HEADERS.signature) + "=="),
    ],
    [
      "std base64 alphabet",
      (h) => h.set(AUTH_HEADERS.signature, "+" + h.get(AUTH_HEADERS.signature)!.slice(1)),
    ],
    [
      "duplicate signature header",
      (h) => h.append(AUTH_HEADERS.signature, h.get(AUTH_HEADERS.signature)!),
    ],
    [
      "non-canonical signature trailing bits",
      (h) => {
        const s = h.get(AUTH_HEADERS.signature)!;
        // 86 chars carry 516 bits for 512: the last char's low 4 bits must be 0.
        const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const last = alphabet.indexOf(s[85]);
        h.set(AUTH_HEADERS.signature, s.slice(0, 85) + alphabet[last | 1]);
      },
    ],
  ];
  for (const [name, mutate] of variants) {
    const h = new Headers(good);
    mutate(h);
    assertEquals(
      refusal(() => verifyRequestSignature({ ...original, headers: h }, { now: NOW })),
      "unauthenticated",
      name,
    );
  }
  // parseAuthHeaders accepts the untouched headers.
  assertEquals(parseAuthHeaders(good).timestamp, NOW);
});

Deno.test("timestamps at or beyond the skew window are stale, either way", () => {
  const headers = signed();
  const at = (now: number, skewMs = 30_000) =>
    verifyRequestSignature({ ...original, headers }, { now, skewMs });
  at(NOW + 29_999);
  at(NOW - 29_999);
  assertEquals(refusal(() => at(NOW + 30_000)), "stale_request", "exactly skew old");
  assertEquals(refusal(() => at(NOW - 30_000)), "stale_request", "exactly skew ahead");
  assertEquals(refusal(() => at(NOW + 5_000, 1_000)), "stale_request", "custom skew");
});

Deno.test("a small-order key with an all-zero signature does not verify", () => {
  const identity = "01" + "00".repeat(31);
  const headers = new Headers({
    [AUTH_HEADERS.key]: identity,
    [AUTH_HEADERS.timestamp]: String(NOW),
    [AUTH_HEADERS.nonce]: newNonce(),
    [AUTH_HEADERS.signature]: Buffer.from(new Uint8Array(64)).toString("base64url"),
  });
  assertEquals(
    refusal(() => verifyRequestSignature({ ...original, headers }, { now: NOW })),
    "bad_signature",
  );
});
