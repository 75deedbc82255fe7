/**
 * Packets: the NATS payload of an E2E room. One packet carries a run of 1 to
 * 1024 frames from one sender session and ONE Ed25519 signature over all of
 * them, so a busy sender pays for a signature per run, not per message, while
 * a lone message is still a packet of one, signed and sent at once.
 *
 *   offset  size  field
 *   0       4     magic "UBP1"
 *   4       1     flags: bit 0 = frames are encrypted (else signed plaintext),
 *                 bit 1 = timed (the send time follows the session id)
 *   5       1     reserved, 0
 *   6       2     frame count k (1..1024)
 *   8       32    sender Ed25519 public key
 *   40      4     epoch
 *   44      16    sender session id
 *   (60     8     u64 send time, ms since the Unix epoch: timed packets only)
 *   60/68   ...   k frames: u32 index, 12-byte nonce (zero when not encrypted),
 *                 u32 length L, L bytes (ciphertext || tag, or plaintext)
 *   end-64  64    Ed25519 signature by the sender over
 *                 "unibus/packet/v1" || lp(room id) || bytes [0, end-64)
 *
 * Frame AEAD (ChaCha20-Poly1305, lib/e2e/aead.ts) uses the ratchet's message
 * key for the index and binds everything that places the frame:
 *   aad = "unibus/frame/v1" || lp(room id) || u32 epoch || sender (32)
 *         || session (16) || u32 index
 *
 * @module
 */

import { randomFillSync } from "node:crypto";
import { sha256 } from "@noble/hashes/sha2.js";
import type { Ed25519KeyPair } from "../crypto/ed25519.ts";
import { verifySignature } from "../crypto/ed25519.ts";
import { aeadEncrypt, NONCE_BYTES } from "./aead.ts";
import { ByteReader, concatBytes, lengthPrefixed, utf8 } from "./bytes.ts";

/** Magic bytes at the start of every packet. */
export const PACKET_MAGIC = utf8("UBP1");
/** The most frames one packet may carry. */
export const MAX_FRAMES = 1024;
const HEADER_BYTES = 60;
const TIME_BYTES = 8;
const SIG_BYTES = 64;
const FLAG_ENCRYPTED = 1;
const FLAG_TIMED = 2;
const SIGN_CONTEXT = utf8("unibus/packet/v1");
const FRAME_CONTEXT = utf8("unibus/frame/v1");

/** One frame as it travels. */
export interface WireFrame {
  index: number;
  nonce: Uint8Array;
  body: Uint8Array;
}

/** A parsed packet whose signature has been checked. */
export interface Packet {
  encrypted: boolean;
  sender: Uint8Array;
  epoch: number;
  session: Uint8Array;
  /** The sender's clock when it sealed the packet (ms), or null for an untimed packet. */
  sentAt: number | null;
  frames: WireFrame[];
}

/** Thrown for a packet that is malformed, truncated or not signed by its sender. */
export class PacketError extends Error {
  override name = "PacketError";
}

/**
 * The additional data a frame's AEAD binds.
 *
 * @example
 * ```ts
 * const aad = frameAad("r1", 3, senderPub, session, 17);
 * ```
 */
export function frameAad(
  roomId: string,
  epoch: number,
  sender: Uint8Array,
  session: Uint8Array,
  index: number,
): Uint8Array {
  // One allocation per frame: this runs for every message on both sides.
  const prefix = roomPrefix(FRAME_CONTEXT, roomId);
  const out = new Uint8Array(prefix.length + 4 + 32 + 16 + 4);
  const view = new DataView(out.buffer);
  out.set(prefix);
  view.setUint32(prefix.length, epoch);
  out.set(sender, prefix.length + 4);
  out.set(session, prefix.length + 36);
  view.setUint32(prefix.length + 52, index);
  return out;
}

const prefixes = new Map<string, Uint8Array>();

// context || lp(room id), cached: it is the same for every frame of a room.
function roomPrefix(context: Uint8Array, roomId: string): Uint8Array {
  const key = `${context.length}:${roomId}`;
  let p = prefixes.get(key);
  if (!p) {
    p = concatBytes(context, lengthPrefixed(roomId));
    if (prefixes.size > 1024) prefixes.clear();
    prefixes.set(key, p);
  }
  return p;
}

/** What a sender needs to build packets for one room, epoch and session. */
export interface PacketContext {
  roomId: string;
  epoch: number;
  session: Uint8Array;
  signer: Ed25519KeyPair;
  encrypted: boolean;
  /**
   * The send time to sign into the packet (ms since the Unix epoch). Every
   * sender sets it: receivers refuse untimed and older packets on live
   * subjects (protocol.md §2.9). Left out only by the untimed test vectors.
   */
  sentAt?: number;
}

/**
 * Builds and signs a packet. `frames` are (index, message key, plaintext);
 * with `encrypted` false the message keys are ignored and plaintext travels
 * signed but readable.
 *
 * `nonces` (one 12-byte nonce per frame, encrypted packets only) exists so
 * test vectors can be reproduced (scripts/gen_e2e_vectors.ts); real callers
 * leave it out and get random nonces.
 *
 * @example
 * ```ts
 * const bytes = encodePacket(ctx, [{ index: 0, key: mk0, plaintext }]);
 * ```
 */
export function encodePacket(
  ctx: PacketContext,
  frames: Array<{ index: number; key: Uint8Array | null; plaintext: Uint8Array }>,
  nonces?: Uint8Array[],
): Uint8Array {
  if (frames.length < 1 || frames.length > MAX_FRAMES) {
    throw new RangeError(`a packet carries 1 to ${MAX_FRAMES} frames`);
  }
  if (nonces !== undefined) {
    // Plaintext frames carry zero nonces by definition; accepting others
    // here would let a caller emit packets no other encoder produces.
    if (!ctx.encrypted) throw new RangeError("nonces are for encrypted packets only");
    if (nonces.length !== frames.length || nonces.some((n) => n.length !== NONCE_BYTES)) {
      throw new RangeError(`one ${NONCE_BYTES}-byte nonce per frame`);
    }
  }
  if (ctx.session.length !== 16) throw new RangeError("a session id is 16 bytes");
  const timed = ctx.sentAt !== undefined;
  if (timed && !(Number.isSafeInteger(ctx.sentAt) && ctx.sentAt! >= 0)) {
    throw new RangeError("sentAt is a non-negative integer of milliseconds");
  }
  const header = HEADER_BYTES + (timed ? TIME_BYTES : 0);
  const sender = ctx.signer.publicKey;
  const allNonces = new Uint8Array(NONCE_BYTES * frames.length);
  if (nonces !== undefined) nonces.forEach((n, i) => allNonces.set(n, i * NONCE_BYTES));
  else if (ctx.encrypted) randomFillSync(allNonces);
  const bodies = frames.map((f, i) => {
    if (!ctx.encrypted) return f.plaintext;
    if (!f.key) throw new Error("an encrypted frame needs its message key");
    const nonce = allNonces.subarray(i * NONCE_BYTES, (i + 1) * NONCE_BYTES);
    return aeadEncrypt(
      f.key,
      nonce,
      f.plaintext,
      frameAad(ctx.roomId, ctx.epoch, sender, ctx.session, f.index),
    );
  });
  // One buffer laid out as signing prefix || packet || signature: the
  // signature covers the first two parts in place, the packet is the last
  // two, and nothing is copied twice (this runs for every packet sent).
  const prefix = roomPrefix(SIGN_CONTEXT, ctx.roomId);
  let size = header + SIG_BYTES;
  for (const b of bodies) size += 4 + NONCE_BYTES + 4 + b.length;
  const buf = new Uint8Array(prefix.length + size);
  const view = new DataView(buf.buffer);
  let at = prefix.length;
  buf.set(prefix);
  buf.set(PACKET_MAGIC, at);
  buf[at + 4] = (ctx.encrypted ? FLAG_ENCRYPTED : 0) | (timed ? FLAG_TIMED : 0);
  view.setUint16(at + 6, frames.length);
  buf.set(sender, at + 8);
  view.setUint32(at + 40, ctx.epoch);
  buf.set(ctx.session, at + 44);
  if (timed) view.setBigUint64(at + HEADER_BYTES, BigInt(ctx.sentAt!));
  at += header;
  frames.forEach((f, i) => {
    view.setUint32(at, f.index);
    buf.set(allNonces.subarray(i * NONCE_BYTES, (i + 1) * NONCE_BYTES), at + 4);
    view.setUint32(at + 4 + NONCE_BYTES, bodies[i].length);
    buf.set(bodies[i], at + 8 + NONCE_BYTES);
    at += 8 + NONCE_BYTES + bodies[i].length;
  });
  buf.set(ctx.signer.sign(buf.subarray(0, at)), at);
  return buf.subarray(prefix.length);
}

/**
 * Parses a packet and checks its signature against the sender key it names.
 * Membership of that sender is the caller's to check: a valid signature only
 * says who sent it.
 *
 * @example
 * ```ts
 * const packet = decodePacket("r1", bytes); // throws PacketError if forged or cut short
 * ```
 */
export function decodePacket(roomId: string, bytes: Uint8Array): Packet {
  if (bytes.length < HEADER_BYTES + SIG_BYTES) throw new PacketError("packet too short");
  const signed = bytes.subarray(0, bytes.length - SIG_BYTES);
  const r = new ByteReader(signed);
  try {
    const magic = r.take(4);
    if (!magic.every((b, i) => b === PACKET_MAGIC[i])) throw new PacketError("not a unibus packet");
    const flags = r.u8();
    if ((flags & ~(FLAG_ENCRYPTED | FLAG_TIMED)) !== 0 || r.u8() !== 0) {
      throw new PacketError("unknown packet flags");
    }
    const count = r.u16();
    if (count < 1 || count > MAX_FRAMES) throw new PacketError("bad frame count");
    const sender = r.take(32);
    const epoch = r.u32();
    const session = r.take(16);
    let sentAt: number | null = null;
    if (flags & FLAG_TIMED) {
      const t = r.take(TIME_BYTES);
      const v = new DataView(t.buffer, t.byteOffset, TIME_BYTES).getBigUint64(0);
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new PacketError("send time out of range");
      sentAt = Number(v);
    }
    const frames: WireFrame[] = [];
    for (let i = 0; i < count; i++) {
      const index = r.u32();
      const nonce = r.take(NONCE_BYTES);
      const body = r.take(r.u32());
      frames.push({ index, nonce, body });
    }
    if (r.remaining !== 0) throw new PacketError("trailing bytes after the frames");
    const sig = bytes.subarray(bytes.length - SIG_BYTES);
    if (!verifySignature(sender, concatBytes(roomPrefix(SIGN_CONTEXT, roomId), signed), sig)) {
      throw new PacketError("packet signature does not verify");
    }
    return {
      encrypted: (flags & FLAG_ENCRYPTED) !== 0,
      sender,
      epoch,
      session,
      sentAt,
      frames,
    };
  } catch (err) {
    if (err instanceof PacketError) throw err;
    throw new PacketError("packet truncated");
  }
}

const REPLY_CONTEXT = utf8("unibus/reply/v1");

/**
 * The sender session of the reply to one request: SHA-256("unibus/reply/v1"
 * || requester sign pub (32) || request session (16) || u32 request epoch ||
 * u32 request index), first 16 bytes. The session is inside the signed
 * packet, so a reply proves which request it answers; a reply captured from
 * another exchange does not fit.
 *
 * @example
 * ```ts
 * const session = replySessionFor(requesterPub, requestSession, 3, 17);
 * ```
 */
export function replySessionFor(
  requester: Uint8Array,
  requestSession: Uint8Array,
  epoch: number,
  index: number,
): Uint8Array {
  const b = new Uint8Array(REPLY_CONTEXT.length + 32 + 16 + 8);
  const view = new DataView(b.buffer);
  b.set(REPLY_CONTEXT);
  b.set(requester, REPLY_CONTEXT.length);
  b.set(requestSession, REPLY_CONTEXT.length + 32);
  view.setUint32(REPLY_CONTEXT.length + 48, epoch);
  view.setUint32(REPLY_CONTEXT.length + 52, index);
  return sha256(b).subarray(0, 16);
}
