/**
 * The nkey spelling of a user key, as docs/protocol.md §3.1 states it: an
 * implementation written from the text alone (below) agrees with the fixture,
 * with our code and with @nats-io/nkeys, and the document shows the same
 * worked example.
 */

import { fromPublic, fromSeed } from "@nats-io/nkeys";
import { decodeAnyBase64, NativeNkeyPair, Prefix } from "../lib/auth/nkey.ts";
import { fromHex, toHex } from "../lib/e2e/bytes.ts";
import { nkeyPublicFromSignPub, signPubFromNkey } from "../lib/identity/identity.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";

const vectors = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/nkey_vectors.json", import.meta.url)),
);
const protocol = await Deno.readTextFile(new URL("../docs/protocol.md", import.meta.url));

/** CRC-16/XMODEM: poly 0x1021, init 0, no reflection, no final XOR (§3.1). */
function crc16Xmodem(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1);
  }
  return crc & 0xffff;
}

/** RFC 4648 base32, alphabet A-Z 2-7, no padding. */
function base32(bytes: Uint8Array): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let out = "";
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(acc << (5 - bits)) & 31];
  return out;
}

/** prefix || payload || u16le(crc) in base32, as §3.1 spells it. */
function spell(prefix: number[], payload: Uint8Array): { crc: number; text: string } {
  const raw = new Uint8Array([...prefix, ...payload]);
  const crc = crc16Xmodem(raw);
  return { crc, text: base32(new Uint8Array([...raw, crc & 0xff, crc >> 8])) };
}

Deno.test("CRC-16/XMODEM has its check value", () => {
  assertEquals(crc16Xmodem(new TextEncoder().encode("123456789")), 0x31c3);
});

Deno.test("the public nkey of the worked example follows the steps of protocol.md §3.1", () => {
  const u = vectors.user;
  const pub = fromHex(u.signPubHex);
  assertEquals(toHex(new Uint8Array([u.prefixByte, ...pub])), u.rawHex);
  const { crc, text } = spell([u.prefixByte], pub);
  assertEquals(crc, u.crc16);
  assertEquals(toHex(new Uint8Array([crc & 0xff, crc >> 8])), u.crcBytesHex);
  assertEquals(text, u.nkey);
  assertEquals(text.length, 56);
  // Our code and the NATS library spell it the same way.
  assertEquals(nkeyPublicFromSignPub(pub), u.nkey);
  assertEquals(new NativeNkeyPair(Prefix.User, fromHex(u.signSeedHex)).getPublicKey(), u.nkey);
  assertEquals(fromPublic(u.nkey).getPublicKey(), u.nkey);
  assertEquals(toHex(signPubFromNkey(u.nkey)), u.signPubHex);
});

Deno.test("the seed string of the worked example opens in @nats-io/nkeys as the same user", () => {
  const { user: u, seed: s } = vectors;
  const { crc, text } = spell([...fromHex(s.prefixBytesHex)], fromHex(u.signSeedHex));
  assertEquals(crc, s.crc16);
  assertEquals(toHex(new Uint8Array([crc & 0xff, crc >> 8])), s.crcBytesHex);
  assertEquals(text, s.seed);
  assertEquals(text.length, 58);
  assertEquals(fromSeed(new TextEncoder().encode(s.seed)).getPublicKey(), u.nkey);
});

Deno.test("protocol.md shows the fixture's worked example", () => {
  const { user: u, seed: s } = vectors;
  for (const v of [u.signPubHex, u.rawHex, u.nkey, u.signSeedHex, s.seed]) {
    assert(protocol.includes(`\`${v}\``), `protocol.md §3.1 lacks ${v}`);
  }
  assert(protocol.includes("`0x0b54`, appended as the bytes `54 0b`"), "CRC of the public key");
  assert(protocol.includes("`0x100b`, appended as `0b 10`"), "CRC of the seed");
});

Deno.test("a user nkey with a wrong checksum, prefix, case or length is refused", () => {
  const good: string = vectors.user.nkey;
  const flipped = good.slice(0, 10) + (good[10] === "A" ? "B" : "A") + good.slice(11);
  const account = spell([0], fromHex(vectors.user.signPubHex)).text; // "A…": an account key
  for (const bad of [flipped, good.toLowerCase(), good.slice(0, -1), good + "A", account]) {
    assertThrows(() => signPubFromNkey(bad), RangeError);
  }
});

Deno.test("a nonce signature decodes from either base64 alphabet, padded or not", () => {
  // Bytes whose encodings use every character that differs between the two
  // alphabets (+ / against - _), at each length mod 3.
  for (let n = 0; n < 70; n++) {
    const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 151 + n * 7 + 0xfb) & 0xff);
    const std = btoa(String.fromCharCode(...bytes));
    const url = std.replace(/\+/g, "-").replace(/\//g, "_");
    for (const text of [std, std.replace(/=+$/, ""), url, url.replace(/=+$/, "")]) {
      assertEquals(decodeAnyBase64(text), bytes, text);
    }
  }
});

Deno.test("text that is not base64 decodes to null, not to fewer bytes", () => {
  // Node's decoder skips characters outside the alphabet; the callout must not.
  for (
    const bad of ["AQ ID", "AQ.D", "AQID\n", "AQ==ID", "AQID===", "A", "AQIDB", "AQ*D", "ÄQID"]
  ) {
    assertEquals(decodeAnyBase64(bad), null, JSON.stringify(bad));
  }
});
