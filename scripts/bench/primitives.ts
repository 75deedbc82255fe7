/**
 * Per-operation cost of the E2E primitives and of the candidate ratchet
 * KDFs, measured in one process (scripts/bench/main.ts prints them; run
 * alone with `deno run -A scripts/bench/primitives.ts`). Every loop is
 * bounded by a count.
 *
 * @module
 */

import { createCipheriv, createHash, createHmac, hkdfSync, randomBytes } from "node:crypto";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { x25519 } from "@noble/curves/ed25519.js";
import { keyPairFromSeed, verifySignature } from "../../lib/crypto/ed25519.ts";
import { sealBox } from "../../lib/e2e/sealed_box.ts";
import { decodePacket, encodePacket, openPacket, replySessionFor } from "../../lib/e2e/packet.ts";
import { Chain, initialChainKey } from "../../lib/e2e/ratchet.ts";

/** One measured operation: microseconds per call (median of rounds). */
export interface PrimitiveCost {
  name: string;
  usPerOp: number;
}

function time(name: string, n: number, f: () => void, rounds = 5): PrimitiveCost {
  for (let i = 0; i < Math.min(n, 2000); i++) f();
  const per: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) f();
    per.push(((performance.now() - t0) * 1000) / n);
  }
  per.sort((a, b) => a - b);
  return { name, usPerOp: Math.round(per[Math.floor(rounds / 2)] * 100) / 100 };
}

async function timeAsync(
  name: string,
  n: number,
  f: () => Promise<unknown>,
  rounds = 5,
): Promise<PrimitiveCost> {
  for (let i = 0; i < Math.min(n, 500); i++) await f();
  const per: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await f();
    per.push(((performance.now() - t0) * 1000) / n);
  }
  per.sort((a, b) => a - b);
  return { name, usPerOp: Math.round(per[Math.floor(rounds / 2)] * 100) / 100 };
}

/** Measures every primitive; `scale` multiplies the iteration counts. */
export async function benchPrimitives(scale = 1): Promise<PrimitiveCost[]> {
  const n = Math.max(100, Math.round(20_000 * scale));
  const key = new Uint8Array(randomBytes(32));
  const one = Uint8Array.of(1);
  const two = Uint8Array.of(2);
  const out: PrimitiveCost[] = [];
  out.push(time("ratchet step v1: 2 × HMAC-SHA-256, @noble (pure JS)", n, () => {
    hmac(sha256, key, one);
    hmac(sha256, key, two);
  }));
  out.push(time("ratchet step: 2 × HMAC-SHA-256, node:crypto (native)", n, () => {
    createHmac("sha256", key).update(one).digest();
    createHmac("sha256", key).update(two).digest();
  }));
  out.push(time("ratchet step: 1 × HMAC-SHA-512 split in two, node:crypto", n, () => {
    createHmac("sha512", key).update(one).digest();
  }));
  out.push(time("ratchet step v2: HKDF-SHA-256, L = 64, node:crypto hkdfSync (native)", n, () => {
    hkdfSync("sha256", key, new Uint8Array(0), one, 64);
  }));
  const hmacKey = await crypto.subtle.importKey(
    "raw",
    key,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  out.push(
    await timeAsync(
      "ratchet step: 2 × HMAC-SHA-256, WebCrypto (async, key imported)",
      Math.round(n / 4),
      async () => {
        await crypto.subtle.sign("HMAC", hmacKey, one);
        await crypto.subtle.sign("HMAC", hmacKey, two);
      },
    ),
  );
  out.push(
    await timeAsync(
      "ratchet step: import + 2 × HMAC-SHA-256, WebCrypto (async)",
      Math.round(n / 4),
      async () => {
        const k = await crypto.subtle.importKey(
          "raw",
          key,
          { name: "HMAC", hash: "SHA-256" },
          false,
          ["sign"],
        );
        await crypto.subtle.sign("HMAC", k, one);
        await crypto.subtle.sign("HMAC", k, two);
      },
    ),
  );
  const rpk = x25519.getPublicKey(x25519.utils.randomSecretKey());
  out.push(
    time(
      "X25519 for one sealed box (2 scalar mults), @noble (pure JS, v1)",
      Math.max(20, n / 100),
      () => {
        const e = x25519.utils.randomSecretKey();
        x25519.getPublicKey(e);
        x25519.getSharedSecret(e, rpk);
      },
    ),
  );
  const content = new Uint8Array(70);
  out.push(time("sealBox of a room key, native X25519 (v2)", Math.max(20, n / 100), () => {
    sealBox(content, rpk);
  }));
  const nonce = new Uint8Array(12);
  for (const size of [256, 16 * 1024, 256 * 256]) {
    const msg = new Uint8Array(size).fill(7);
    out.push(time(`ChaCha20-Poly1305 seal, one call, ${size} B`, Math.max(50, n / 4), () => {
      const c = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 });
      c.setAAD(one, { plaintextLength: msg.length });
      c.update(msg);
      c.final();
      c.getAuthTag();
    }));
  }
  const kp = keyPairFromSeed(new Uint8Array(32).fill(3));
  for (const size of [256, 16 * 1024]) {
    const msg = new Uint8Array(size).fill(7);
    const sig = kp.sign(msg);
    out.push(time(`Ed25519 sign over the packet, ${size} B`, Math.max(50, n / 8), () => {
      kp.sign(msg);
    }));
    out.push(time(`Ed25519 sign over SHA-256(packet), ${size} B`, Math.max(50, n / 8), () => {
      kp.sign(new Uint8Array(createHash("sha256").update(msg).digest()));
    }));
    out.push(time(`Ed25519 verify over the packet, ${size} B`, Math.max(50, n / 8), () => {
      verifySignature(kp.publicKey, msg, sig);
    }));
    const dsig = kp.sign(new Uint8Array(createHash("sha256").update(msg).digest()));
    out.push(time(`Ed25519 verify over SHA-256(packet), ${size} B`, Math.max(50, n / 8), () => {
      verifySignature(
        kp.publicKey,
        new Uint8Array(createHash("sha256").update(msg).digest()),
        dsig,
      );
    }));
  }
  out.push(...packetCosts(n));
  return out;
}

// The E2E packet path with lib/e2e itself: a run of 256 messages of 256 B
// in one packet (per message), and one request with its reply, every
// cryptographic step of both sides in this one process (no network).
function packetCosts(n: number): PrimitiveCost[] {
  const roomId = "0123456789abcdef0123456789abcdef";
  const roomKey = new Uint8Array(randomBytes(32));
  const a = keyPairFromSeed(new Uint8Array(32).fill(1));
  const b = keyPairFromSeed(new Uint8Array(32).fill(2));
  const session = new Uint8Array(16).fill(9);
  const ck0 = (sender: Uint8Array, s: Uint8Array) =>
    initialChainKey(roomKey, { roomId, epoch: 1, sender, session: s });
  const ctx = { roomId, epoch: 1, session, signer: a, encrypted: true };
  const run = Array.from({ length: 256 }, () => new Uint8Array(256).fill(5));
  const out: PrimitiveCost[] = [];
  const tx = new Chain(ck0(a.publicKey, session));
  out.push(time("seal a packet of 256 × 256 B, per message", Math.max(20, n / 200), () => {
    encodePacket(ctx, { index: tx.index, firstFrame: 0, key: tx.next() }, run);
  }, 5));
  const packets = Array.from({ length: 50 }, (_, i) => {
    const c = new Chain(ck0(a.publicKey, session));
    return encodePacket(ctx, { index: i, firstFrame: 0, key: c.keyFor(i) }, run);
  });
  let k = 0;
  out.push(time("open a packet of 256 × 256 B, per message", Math.max(20, n / 200), () => {
    const p = decodePacket(roomId, packets[k++ % packets.length]);
    openPacket(roomId, p, new Chain(ck0(p.sender, p.session)).keyFor(p.index));
  }, 5));
  // /256 for per message: the loop above timed whole packets.
  out[0].usPerOp = Math.round((out[0].usPerOp / 256) * 100) / 100;
  out[1].usPerOp = Math.round((out[1].usPerOp / 256) * 100) / 100;
  const msg = new Uint8Array(256).fill(6);
  let i = 0;
  out.push(
    time(
      "request + reply, both sides' crypto (4 HKDF steps, 2 CK_0, 2 signs, 2 verifies)",
      Math.max(50, n / 20),
      () => {
        const reqChain = new Chain(ck0(a.publicKey, session), i);
        const req = encodePacket(ctx, { index: i, firstFrame: i, key: reqChain.next() }, [msg]);
        i++;
        const rp = decodePacket(roomId, req);
        openPacket(roomId, rp, new Chain(ck0(rp.sender, rp.session), rp.index).next());
        const rs = replySessionFor(rp.sender, rp.session, 1, rp.firstFrame);
        const rctx = { roomId, epoch: 1, session: rs, signer: b, encrypted: true };
        const reply = encodePacket(rctx, {
          index: 0,
          firstFrame: 0,
          key: new Chain(ck0(b.publicKey, rs)).next(),
        }, [msg]);
        const pp = decodePacket(roomId, reply);
        openPacket(roomId, pp, new Chain(ck0(pp.sender, pp.session)).next());
      },
    ),
  );
  return out;
}

if (import.meta.main) {
  for (const r of await benchPrimitives()) console.log(`| ${r.name} | ${r.usPerOp} |`);
}
