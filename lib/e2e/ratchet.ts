/**
 * The per-sender symmetric ratchet of one epoch.
 *
 *   CK_0     = HKDF-SHA-256(ikm = epoch room key, salt = 32 zero bytes,
 *                           info = "unibus/chain/v1" || lp(room) || u32 epoch
 *                                  || sender sign pub (32) || session (16), L = 32)
 *   MK_i     = HMAC-SHA-256(CK_i, 0x01)      message key of index i
 *   CK_{i+1} = HMAC-SHA-256(CK_i, 0x02)
 *
 * A chain only moves forward and forgets what it passed: the state at index n
 * cannot produce MK_i for i < n (forward secrecy for a leaked ratchet state).
 * Every sender session has its own chain, so a restarted client never reuses
 * a message key.
 *
 * @module
 */

import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concatBytes, lengthPrefixed, u32, utf8 } from "./bytes.ts";

const CHAIN_INFO = utf8("unibus/chain/v1");
const MESSAGE = Uint8Array.of(1);
const NEXT = Uint8Array.of(2);
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
  return hkdf(sha256, roomKey, ZERO_SALT, info, 32);
}

/** Thrown when asked for an index the chain has already passed. */
export class RatchetPassedError extends Error {
  override name = "RatchetPassedError";
}

/**
 * How far a receiver will skip ahead over lost messages before refusing. Each
 * skipped index costs two HMACs; a member could otherwise make every receiver
 * burn seconds of CPU with one forged jump (100 000 skips measured 1.4 s).
 */
export const MAX_SKIP = 2048;

/**
 * A chain positioned at `index`: it hands out each message key once, in
 * order, and can skip forward over lost messages.
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

  constructor(chainKey: Uint8Array, index = 0) {
    this.#ck = chainKey.slice();
    this.#index = index;
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
    const mk = hmac(sha256, this.#ck, MESSAGE);
    const next = hmac(sha256, this.#ck, NEXT);
    this.#ck.fill(0);
    this.#ck = next;
    this.#index++;
    return mk;
  }

  /**
   * The message key of `index` (>= the current index), discarding every key
   * before it. Throws {@linkcode RatchetPassedError} for an index already
   * passed: a replayed or reordered message.
   */
  keyFor(index: number): Uint8Array {
    if (index < this.#index) throw new RatchetPassedError(`index ${index} already passed`);
    if (index - this.#index > MAX_SKIP) throw new RangeError(`index ${index} skips too far ahead`);
    while (this.#index < index) this.next();
    return this.next();
  }
}
