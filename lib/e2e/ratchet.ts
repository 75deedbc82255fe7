/**
 * The per-sender symmetric ratchet of one epoch (protocol v2): one step per
 * packet, not per message.
 *
 *   CK_0            = HKDF-SHA-256(ikm = epoch room key, salt = 32 zero bytes,
 *                                  info = "unibus/chain/v2" || lp(room) || u32 epoch
 *                                         || sender sign pub (32) || session (16), L = 32)
 *   MK_n || CK_n+1  = HKDF-SHA-256(ikm = CK_n, salt = 32 zero bytes,
 *                                  info = "unibus/step/v2", L = 64)
 *
 * MK_n is the key of packet n of the session (all its frames, one AEAD).
 * A chain only moves forward and forgets what it passed: the state at index
 * n cannot produce MK_i for i < n (forward secrecy for a leaked ratchet
 * state, at the granularity of one packet).
 *
 * Why HKDF through node:crypto's `hkdfSync` and one step per packet
 * (measured in scripts/bench/primitives.ts, docs/benchmarks.md): v1 ran two
 * pure-JS HMACs per message, 42–46 % of a busy sender's and receiver's CPU.
 * `hkdfSync` is native and synchronous (about half the cost of @noble's two
 * HMACs; node's `createHmac` and WebCrypto's async HMAC were slower per step
 * in Deno); stepping per packet divides what is left by the frames per packet.
 *
 * @module
 */

import { hkdfSync } from "node:crypto";
import { concatBytes, lengthPrefixed, u32, utf8 } from "./bytes.ts";

const CHAIN_INFO = utf8("unibus/chain/v2");
const STEP_INFO = utf8("unibus/step/v2");
const ZERO_SALT = new Uint8Array(32);

/** Who a chain belongs to. */
export interface ChainId {
  roomId: string;
  epoch: number;
  sender: Uint8Array;
  session: Uint8Array;
}

/**
 * CK_0 of a sender session's chain.
 *
 * @example
 * ```ts
 * const ck0 = initialChainKey(roomKey, { roomId, epoch: 1, sender, session });
 * ```
 */
export function initialChainKey(roomKey: Uint8Array, id: ChainId): Uint8Array {
  const info = concatBytes(
    CHAIN_INFO,
    lengthPrefixed(id.roomId),
    u32(id.epoch),
    id.sender,
    id.session,
  );
  return new Uint8Array(hkdfSync("sha256", roomKey, ZERO_SALT, info, 32));
}

// One ratchet step: the message key of `ck`'s index and the next chain key.
function ratchetStep(ck: Uint8Array): { messageKey: Uint8Array; nextChainKey: Uint8Array } {
  const okm = new Uint8Array(hkdfSync("sha256", ck, ZERO_SALT, STEP_INFO, 64));
  return { messageKey: okm.subarray(0, 32), nextChainKey: okm.subarray(32) };
}

/** Thrown when asked for an index the chain has already passed. */
export class RatchetPassedError extends Error {
  override name = "RatchetPassedError";
}

/**
 * How many packets a receiver will skip ahead over lost ones before refusing.
 * Each skipped index costs one HKDF step (a few µs); a member could otherwise
 * make every receiver burn CPU with one forged jump.
 */
export const MAX_SKIP = 2048;

/**
 * The skip limit of a history reader, which starts every session at CK_0 and
 * may begin reading in the middle of a long one: 2^17 steps, well under a
 * second of HKDF per session (a forged far index costs a reader that much
 * once, then the session is positioned).
 */
export const MAX_HISTORY_SKIP = 131_072;

/**
 * A chain positioned at `index`: it hands out each message key once, in
 * order, and can skip forward over lost packets.
 *
 * @example
 * ```ts
 * const chain = new Chain(ck0);
 * const mk0 = chain.next();      // index 0
 * const mk5 = chain.keyFor(5);   // skips 1..4
 * ```
 */
export class Chain {
  #ck: Uint8Array;
  #index: number;
  #maxSkip: number;

  constructor(chainKey: Uint8Array, index = 0, maxSkip = MAX_SKIP) {
    this.#ck = chainKey.slice();
    this.#index = index;
    this.#maxSkip = maxSkip;
  }

  /** The index of the next message key. */
  get index(): number {
    return this.#index;
  }

  /**
   * A copy of the chain key at the current index: what a receiver persists
   * to resume this chain after a restart (lib/client/receive_state.ts). It
   * yields the keys of this and later indices only, never earlier ones.
   */
  get chainKey(): Uint8Array {
    return this.#ck.slice();
  }

  /** The message key of the current index, then steps forward. */
  next(): Uint8Array {
    const { messageKey, nextChainKey } = ratchetStep(this.#ck);
    this.#ck.fill(0);
    this.#ck = nextChainKey;
    this.#index++;
    return messageKey;
  }

  /**
   * The message key of `index` (>= the current index), discarding every key
   * before it. Throws {@linkcode RatchetPassedError} for an index already
   * passed: a replayed or reordered packet.
   */
  keyFor(index: number): Uint8Array {
    if (index < this.#index) throw new RatchetPassedError(`index ${index} already passed`);
    if (index - this.#index > this.#maxSkip) {
      throw new RangeError(`index ${index} skips too far ahead`);
    }
    while (this.#index < index) this.next();
    return this.next();
  }
}
