/**
 * Packets (protocol v2): the NATS payload of an E2E room. One packet carries
 * a run of 1 to 1024 frames from one sender session, ONE ratchet key and ONE
 * AEAD over all of them, and ONE Ed25519 signature over a SHA-256 digest of
 * the packet, so a busy sender pays the per-message costs once per run while
 * a lone message is still a packet of one, sealed and sent at once.
 *
 *   offset  size  field
 *   0       4     magic "UBP2"
 *   4       1     flags: bit 0 = body is encrypted (else signed plaintext),
 *                 bit 1 = timed (the send time follows the nonce)
 *   5       1     reserved, 0
 *   6       2     frame count k (1..1024)
 *   8       32    sender Ed25519 public key
 *   40      4     epoch
 *   44      16    sender session id
 *   60      4     packet index n (the ratchet index: MK_n keys this packet)
 *   64      4     first frame index f (frames are numbered f .. f+k-1)
 *   68      12    nonce (zero when not encrypted)
 *   (80     8     u64 send time, ms since the Unix epoch: timed packets only)
 *   80/88   ...   body: k × (u32 length L || L bytes), encrypted as one
 *                 ChaCha20-Poly1305 message (|| 16-byte tag) when bit 0 is set
 *   end-64  64    Ed25519 signature by the sender over
 *                 "unibus/packet/v2" || lp(room id) || SHA-256(bytes [0, end-64))
 *
 * Body AEAD: key MK_n, the nonce above, and
 *   aad = "unibus/body/v2" || lp(room id) || the header (bytes [0, 80 or 88))
 * which binds room, epoch, sender, session, both indices, the frame count,
 * the flags and the send time.
 *
 * @module
 */

import { createHash, randomFillSync } from "node:crypto";
import { sha256 } from "@noble/hashes/sha2.js";
import type { Ed25519KeyPair } from "../crypto/ed25519.ts";
import { verifySignature } from "../crypto/ed25519.ts";
import { aeadDecrypt, aeadEncryptInto, NONCE_BYTES, TAG_BYTES } from "./aead.ts";
import { concatBytes, lengthPrefixed, toHex, utf8 } from "./bytes.ts";

/** The packet format version this code speaks (docs/protocol.md §2.7). */
export const PACKET_VERSION = 2;
/** Magic bytes at the start of every packet of this version. */
export const PACKET_MAGIC = utf8("UBP2");
/** The most frames one packet may carry. */
export const MAX_FRAMES = 1024;
/** Header bytes before the body of an untimed packet (a timed one has 8 more). */
export const HEADER_BYTES = 80;
const TIME_BYTES = 8;
const SIG_BYTES = 64;
// Where the header's fields start (the table above), for the encoder, the
// decoder and packetLane alike.
const AT_SENDER = 8;
const AT_EPOCH = 40;
const AT_SESSION = 44;
const AT_INDEX = 60;
const AT_FIRST_FRAME = 64;
const AT_NONCE = 68;
// The shortest packet: an untimed header, one empty frame's length, the signature.
const MIN_PACKET_BYTES = HEADER_BYTES + 4 + SIG_BYTES;
const FLAG_ENCRYPTED = 1;
const FLAG_TIMED = 2;
const SIGN_CONTEXT = utf8("unibus/packet/v2");
const BODY_CONTEXT = utf8("unibus/body/v2");
const U32_MAX = 0xffff_ffff;
// Average frame size from which a packet body is streamed through the cipher
// (measured: below it, one cipher call per frame costs more than a copy).
const STREAM_MIN_FRAME_BYTES = 4096;

/** A parsed packet whose signature has been checked; the body is still sealed. */
export interface Packet {
  encrypted: boolean;
  sender: Uint8Array;
  epoch: number;
  session: Uint8Array;
  /** Packet index n: the ratchet index, one per packet of the session. */
  index: number;
  /** Index of the first frame; frame j of the packet is `firstFrame + j`. */
  firstFrame: number;
  count: number;
  nonce: Uint8Array;
  /** The sender's clock when it sealed the packet (ms), or null for an untimed packet. */
  sentAt: number | null;
  /** The header (bytes [0, 80), or [0, 88) when timed): what the body's AEAD binds. */
  header: Uint8Array;
  body: Uint8Array;
}

/** Thrown for a packet that is malformed, truncated or not signed by its sender. */
export class PacketError extends Error {
  override name = "PacketError";
}

/**
 * Thrown for a well-formed packet of another protocol version (e.g. "UBP1"
 * from a client before v2): reported as such, never parsed as garbage.
 */
export class PacketVersionError extends PacketError {
  override name = "PacketVersionError";
  constructor(readonly version: number) {
    super(
      `packet format v${version} is not supported: this client speaks v${PACKET_VERSION} (docs/protocol.md §2.7); upgrade the ${
        version < PACKET_VERSION ? "sender" : "receiver"
      }`,
    );
  }
}

// Whether `bytes` starts with this version's magic (no closure: it runs for
// every packet received and every stored one read).
function hasMagic(bytes: Uint8Array): boolean {
  return bytes[0] === PACKET_MAGIC[0] && bytes[1] === PACKET_MAGIC[1] &&
    bytes[2] === PACKET_MAGIC[2] && bytes[3] === PACKET_MAGIC[3];
}

const prefixes = new Map<string, Uint8Array>();

// context || lp(room id), cached: it is the same for every packet of a room.
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

/**
 * The additional data the body's AEAD binds: context, room, the header.
 *
 * @example
 * ```ts
 * const aad = bodyAad("r1", packetBytes.subarray(0, HEADER_BYTES));
 * ```
 */
export function bodyAad(roomId: string, header: Uint8Array): Uint8Array {
  return concatBytes(roomPrefix(BODY_CONTEXT, roomId), header);
}

/**
 * The message an Ed25519 packet signature covers: context, room and the
 * SHA-256 digest of the packet up to the signature. Hashing first (natively)
 * keeps a 16 KiB packet from being hashed twice by Ed25519's SHA-512; the
 * price is reliance on SHA-256's collision resistance (docs/protocol.md §2.7).
 *
 * @example
 * ```ts
 * const msg = packetSignedMessage("r1", packetBytes.subarray(0, packetBytes.length - 64));
 * ```
 */
export function packetSignedMessage(roomId: string, unsigned: Uint8Array): Uint8Array {
  const prefix = roomPrefix(SIGN_CONTEXT, roomId);
  const out = new Uint8Array(prefix.length + 32);
  out.set(prefix);
  out.set(createHash("sha256").update(unsigned).digest(), prefix.length);
  return out;
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

/** One packet's place in its session and its key. */
export interface PacketPlace {
  /** Packet index n (the ratchet index). */
  index: number;
  /** Index of the packet's first frame. */
  firstFrame: number;
  /** MK_n; null for a sign-only packet. */
  key: Uint8Array | null;
}

/**
 * Builds and signs a packet of `frames`. With `encrypted` false the key is
 * ignored and the frames travel signed but readable.
 *
 * `nonce` (12 bytes, encrypted packets only) exists so test vectors can be
 * reproduced (scripts/gen_e2e_vectors.ts); real callers leave it out and get
 * a random one.
 *
 * @example
 * ```ts
 * const bytes = encodePacket(ctx, { index: 0, firstFrame: 0, key: mk0 }, [plaintext]);
 * ```
 */
export function encodePacket(
  ctx: PacketContext,
  place: PacketPlace,
  frames: Uint8Array[],
  nonce?: Uint8Array,
): Uint8Array {
  if (frames.length < 1 || frames.length > MAX_FRAMES) {
    throw new RangeError(`a packet carries 1 to ${MAX_FRAMES} frames`);
  }
  if (nonce !== undefined) {
    // Plaintext packets carry a zero nonce by definition; accepting another
    // here would let a caller emit packets no other encoder produces.
    if (!ctx.encrypted) throw new RangeError("a nonce is for encrypted packets only");
    if (nonce.length !== NONCE_BYTES) throw new RangeError(`a nonce is ${NONCE_BYTES} bytes`);
  }
  if (ctx.session.length !== 16) throw new RangeError("a session id is 16 bytes");
  if (
    !Number.isInteger(place.index) || place.index < 0 || place.index > U32_MAX ||
    !Number.isInteger(place.firstFrame) || place.firstFrame < 0 ||
    place.firstFrame + frames.length - 1 > U32_MAX
  ) {
    throw new RangeError("packet or frame index out of range");
  }
  const timed = ctx.sentAt !== undefined;
  if (timed && !(Number.isSafeInteger(ctx.sentAt) && ctx.sentAt! >= 0)) {
    throw new RangeError("sentAt is a non-negative integer of milliseconds");
  }
  const headerLength = HEADER_BYTES + (timed ? TIME_BYTES : 0);
  let plain = 0;
  for (const f of frames) plain += 4 + f.length;
  const bodyLength = plain + (ctx.encrypted ? TAG_BYTES : 0);
  const out = new Uint8Array(headerLength + bodyLength + SIG_BYTES);
  const view = new DataView(out.buffer);
  out.set(PACKET_MAGIC);
  out[4] = (ctx.encrypted ? FLAG_ENCRYPTED : 0) | (timed ? FLAG_TIMED : 0);
  view.setUint16(6, frames.length);
  out.set(ctx.signer.publicKey, AT_SENDER);
  view.setUint32(AT_EPOCH, ctx.epoch);
  out.set(ctx.session, AT_SESSION);
  view.setUint32(AT_INDEX, place.index);
  view.setUint32(AT_FIRST_FRAME, place.firstFrame);
  if (timed) view.setBigUint64(HEADER_BYTES, BigInt(ctx.sentAt!));
  const header = out.subarray(0, headerLength);
  const end = headerLength + bodyLength;
  // Large frames (on average) are streamed through the cipher straight into
  // the packet, each after its 4-byte length: no joined plaintext and no
  // ciphertext copy (16 KiB messages: two 16 KiB copies fewer per packet).
  // Small ones are laid out in a scratch buffer first, since a cipher call
  // per frame would cost more than copying them; plaintext ones in place.
  const streamed = ctx.encrypted && plain >= STREAM_MIN_FRAME_BYTES * frames.length;
  if (ctx.encrypted) {
    if (!place.key) throw new Error("an encrypted packet needs its message key");
    const n = out.subarray(AT_NONCE, HEADER_BYTES);
    if (nonce) n.set(nonce);
    else randomFillSync(n);
  }
  let parts: Uint8Array[];
  if (streamed) {
    const lengths = new Uint8Array(4 * frames.length);
    const lengthView = new DataView(lengths.buffer);
    parts = [];
    for (const [i, f] of frames.entries()) {
      lengthView.setUint32(4 * i, f.length);
      parts.push(lengths.subarray(4 * i, 4 * i + 4), f);
    }
  } else {
    const frameBuf = ctx.encrypted ? new Uint8Array(plain) : out.subarray(headerLength);
    const frameView = new DataView(frameBuf.buffer, frameBuf.byteOffset, frameBuf.byteLength);
    let at = 0;
    for (const f of frames) {
      frameView.setUint32(at, f.length);
      frameBuf.set(f, at + 4);
      at += 4 + f.length;
    }
    parts = [frameBuf];
  }
  if (ctx.encrypted) {
    const body = out.subarray(headerLength, end);
    aeadEncryptInto(
      place.key!,
      out.subarray(AT_NONCE, HEADER_BYTES),
      parts,
      bodyAad(ctx.roomId, header),
      body,
    );
  }
  out.set(ctx.signer.sign(packetSignedMessage(ctx.roomId, out.subarray(0, end))), end);
  return out;
}

/**
 * Parses a packet and checks its signature against the sender key it names.
 * Membership of that sender is the caller's to check: a valid signature only
 * says who sent it. The body is opened by {@linkcode openPacket}.
 *
 * @example
 * ```ts
 * const packet = decodePacket("r1", bytes); // throws PacketError if forged or cut short
 * ```
 */
export function decodePacket(roomId: string, bytes: Uint8Array): Packet {
  // The version is read before anything else, so a peer on another version
  // gets that answer and not "signature does not verify".
  if (
    bytes.length >= 4 && bytes[0] === 0x55 && bytes[1] === 0x42 && bytes[2] === 0x50 &&
    bytes[3] !== PACKET_MAGIC[3] && bytes[3] >= 0x31 && bytes[3] <= 0x39
  ) {
    throw new PacketVersionError(bytes[3] - 0x30);
  }
  if (bytes.length < MIN_PACKET_BYTES) throw new PacketError("packet too short");
  if (!hasMagic(bytes)) throw new PacketError("not a unibus packet");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const flags = bytes[4];
  if ((flags & ~(FLAG_ENCRYPTED | FLAG_TIMED)) !== 0 || bytes[5] !== 0) {
    throw new PacketError("unknown packet flags");
  }
  const encrypted = (flags & FLAG_ENCRYPTED) !== 0;
  const headerLength = HEADER_BYTES + ((flags & FLAG_TIMED) ? TIME_BYTES : 0);
  if (bytes.length < headerLength + 4 + SIG_BYTES) throw new PacketError("packet too short");
  const count = view.getUint16(6);
  if (count < 1 || count > MAX_FRAMES) throw new PacketError("bad frame count");
  const firstFrame = view.getUint32(AT_FIRST_FRAME);
  if (firstFrame + count - 1 > U32_MAX) throw new PacketError("frame index out of range");
  const nonce = bytes.subarray(AT_NONCE, HEADER_BYTES);
  let sentAt: number | null = null;
  if (flags & FLAG_TIMED) {
    const t = view.getBigUint64(HEADER_BYTES);
    if (t > BigInt(Number.MAX_SAFE_INTEGER)) throw new PacketError("send time out of range");
    sentAt = Number(t);
  }
  const body = bytes.subarray(headerLength, bytes.length - SIG_BYTES);
  // Each frame takes at least its 4-byte length: a count the body cannot
  // hold is refused before any work.
  if (body.length < 4 * count + (encrypted ? TAG_BYTES : 0)) {
    throw new PacketError("body shorter than its frames");
  }
  if (!encrypted && !nonce.every((b) => b === 0)) throw new PacketError("plaintext nonce not zero");
  const sender = bytes.subarray(AT_SENDER, AT_EPOCH);
  const sig = bytes.subarray(bytes.length - SIG_BYTES);
  const unsigned = bytes.subarray(0, bytes.length - SIG_BYTES);
  if (!verifySignature(sender, packetSignedMessage(roomId, unsigned), sig)) {
    throw new PacketError("packet signature does not verify");
  }
  return {
    encrypted,
    sender,
    epoch: view.getUint32(AT_EPOCH),
    session: bytes.subarray(AT_SESSION, AT_INDEX),
    index: view.getUint32(AT_INDEX),
    firstFrame,
    count,
    nonce,
    sentAt,
    header: bytes.subarray(0, headerLength),
    body,
  };
}

/**
 * The frames of a verified packet: decrypted with `key` (MK of the packet's
 * index) when encrypted. Null when the AEAD fails; throws
 * {@linkcode PacketError} when the frames do not exactly fill the body.
 *
 * @example
 * ```ts
 * const frames = openPacket("r1", packet, chain.keyFor(packet.index));
 * ```
 */
export function openPacket(
  roomId: string,
  packet: Packet,
  key: Uint8Array | null,
): Uint8Array[] | null {
  let plain = packet.body;
  if (packet.encrypted) {
    if (!key) throw new Error("an encrypted packet needs its message key");
    const opened = aeadDecrypt(key, packet.nonce, packet.body, bodyAad(roomId, packet.header));
    if (opened === null) return null;
    plain = opened;
  }
  const view = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
  const frames: Uint8Array[] = [];
  let at = 0;
  for (let j = 0; j < packet.count; j++) {
    if (at + 4 > plain.length) throw new PacketError("frames truncated");
    const len = view.getUint32(at);
    if (at + 4 + len > plain.length) throw new PacketError("frames truncated");
    frames.push(plain.subarray(at + 4, at + 4 + len));
    at += 4 + len;
  }
  if (at !== plain.length) throw new PacketError("trailing bytes after the frames");
  return frames;
}

const REPLY_CONTEXT = utf8("unibus/reply/v1");

/**
 * The sender session of the reply to one request: SHA-256("unibus/reply/v1"
 * || requester sign pub (32) || request session (16) || u32 request epoch ||
 * u32 request frame index), first 16 bytes. The session is inside the signed
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

/**
 * Where a packet belongs, read from its header and NOT verified: its sender
 * session (sender, epoch and session id as one hex key) and packet index;
 * null when the bytes are not a packet of this version. For ordering only:
 * a history reader receives each session's packets in index order
 * (lib/client/history_reader.ts), and every packet is still verified by
 * {@linkcode decodePacket} before anything of it is used. Verifying here
 * too would cost a second signature check per packet.
 *
 * @example
 * ```ts
 * const at = packetLane(bytes); // { lane: "…", index: 7 } or null
 * ```
 */
export function packetLane(bytes: Uint8Array): { lane: string; index: number } | null {
  if (bytes.length < MIN_PACKET_BYTES) return null;
  if (!hasMagic(bytes)) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Sender key, epoch and session id: the bytes that name a sender session.
  return { lane: toHex(bytes.subarray(AT_SENDER, AT_INDEX)), index: view.getUint32(AT_INDEX) };
}
