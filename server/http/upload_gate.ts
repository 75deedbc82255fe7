/**
 * How many large request bodies the node reads at once, per user and in
 * total. A body's signature can only be checked once all of it is in, so a
 * caller naming any registered key (public keys are easy to learn) can make
 * the node buffer bodies it will then refuse: 40 parallel 8 MiB requests with
 * bad signatures once raised serve's memory by up to 210 MB. With the gate,
 * what such a flood can make the node hold is bounded by
 * `total × route limit`, and one key can take at most `perUser` of it.
 *
 * @module
 */

import { HttpError } from "./app.ts";

/** Request bodies larger than this (or of unknown length) pass the gate. */
export const LARGE_BODY_BYTES = 64 * 1024;

/**
 * Counting semaphore per key and overall; never waits: a caller beyond a
 * bound is refused at once, so nothing queues up in memory either.
 *
 * @example
 * ```ts
 * const gate = new UploadGate({ perUser: 2, total: 16 });
 * const release = gate.enter(signPub); // throws HttpError 429 when full
 * try { await readBody(req, ctx); } finally { release(); }
 * ```
 */
export class UploadGate {
  readonly perUser: number;
  readonly total: number;
  #byUser = new Map<string, number>();
  #inFlight = 0;

  constructor(opts: { perUser: number; total: number }) {
    for (const [name, v] of Object.entries(opts)) {
      if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${name} must be at least 1`);
    }
    this.perUser = opts.perUser;
    this.total = opts.total;
  }

  /** Large bodies being read now, all users together. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Takes a place for `key`, or throws {@linkcode HttpError} 429
   * `too_many_uploads` naming the bound (`uploads_per_user` or `uploads`),
   * its maximum and the current use. Returns the release function; calling
   * it twice releases once.
   *
   * @example
   * ```ts
   * const release = gate.enter(key);
   * release();
   * ```
   */
  enter(key: string): () => void {
    const mine = this.#byUser.get(key) ?? 0;
    if (mine >= this.perUser) throw busy("uploads_per_user", this.perUser, mine);
    if (this.#inFlight >= this.total) throw busy("uploads", this.total, this.#inFlight);
    this.#byUser.set(key, mine + 1);
    this.#inFlight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inFlight--;
      const left = (this.#byUser.get(key) ?? 1) - 1;
      if (left > 0) this.#byUser.set(key, left);
      else this.#byUser.delete(key);
    };
  }
}

function busy(limit: string, max: number, used: number): HttpError {
  return new HttpError(
    429,
    "too_many_uploads",
    `too many large uploads at once (${limit}: ${used} of ${max}); retry shortly`,
    { limit, max, used },
  );
}
