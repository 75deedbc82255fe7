/**
 * How many large request bodies the node reads at once: per source address,
 * per user from one source, and in total. A body's signature can only be
 * checked once all of it is in, so a caller naming any registered key
 * (public keys are easy to learn) can make the node buffer bodies it will
 * then refuse: 40 parallel 8 MiB requests with bad signatures once raised
 * serve's memory by up to 210 MB. With the gate, what such a flood can make
 * the node hold is bounded by `total × route limit`.
 *
 * Why per source, and why a user's places are counted per source: before
 * the body is read, the named key proves nothing, so any bound counted by key
 * alone is one a stranger can fill by naming the key (naming the victim's
 * key took its 2 places; naming 8 keys took all 16 of the node's). The TCP
 * peer address is the one thing about a caller that cannot be chosen by
 * typing it into a header. So one source holds at most `perSource` places,
 * whatever keys it names (it cannot fill the node), and a key's `perUser`
 * places are separate for each source (a stranger elsewhere naming the
 * victim's key takes the stranger's places, not the victim's).
 *
 * @module
 */

import { HttpError } from "./app.ts";

/** Request bodies larger than this (or of unknown length) pass the gate. */
export const LARGE_BODY_BYTES = 64 * 1024;

/** The gate's bounds. */
export interface UploadBounds {
  /** Places one key may hold from one source. */
  perUser: number;
  /** Places one source may hold, all keys together. */
  perSource: number;
  /** Places of the whole node. */
  total: number;
}

/**
 * The source a connection counts against: an IPv4 address itself, an IPv6
 * address by its /64 prefix. A single IPv6 host usually owns a whole /64
 * (2^64 addresses), so counting full IPv6 addresses would give one attacker
 * as many places as it likes. IPv4-mapped IPv6 (`::ffff:a.b.c.d`) counts as
 * the IPv4 address. Unknown (no address): one shared source, i.e. the
 * strictest reading.
 *
 * @example
 * ```ts
 * sourceOf("2001:db8:1:2:3:4:5:6"); // "2001:db8:1:2::/64"
 * sourceOf("10.0.0.7"); // "10.0.0.7"
 * ```
 */
export function sourceOf(address: string | undefined): string {
  if (!address) return "unknown";
  const addr = address.replace(/^\[|\]$/g, "").replace(/%.*$/, "").toLowerCase();
  if (!addr.includes(":")) return addr;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(addr);
  if (mapped) return mapped[1];
  const [head, tail] = addr.includes("::") ? addr.split("::", 2) : [addr, null];
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  // An embedded IPv4 tail takes two groups; only the first four matter here.
  const groups = tail === null
    ? left
    : [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  const prefix = groups.slice(0, 4).map((g) => (g.replace(/^0+(?=.)/, "") || "0"));
  while (prefix.length < 4) prefix.push("0");
  return `${prefix.join(":")}::/64`;
}

/**
 * Counting semaphore per (source, key), per source and overall; never
 * waits: a caller beyond a bound is refused at once, so nothing queues up in
 * memory either.
 *
 * @example
 * ```ts
 * const gate = new UploadGate({ perUser: 2, perSource: 4, total: 16 });
 * const release = gate.enter(signPub, sourceOf(ctx.remoteAddr)); // throws HttpError 429 when full
 * try { await readBody(req, ctx); } finally { release(); }
 * ```
 */
export class UploadGate {
  readonly perUser: number;
  readonly perSource: number;
  readonly total: number;
  #byUser = new Map<string, number>();
  #bySource = new Map<string, number>();
  #inFlight = 0;

  constructor(opts: UploadBounds) {
    for (const [name, v] of Object.entries(opts)) {
      if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${name} must be at least 1`);
    }
    this.perUser = opts.perUser;
    this.perSource = opts.perSource;
    this.total = opts.total;
  }

  /** Large bodies being read now, all users together. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Takes a place for `key` sending from `source` (see {@linkcode sourceOf}),
   * or throws {@linkcode HttpError} 429 `too_many_uploads` naming the bound
   * (`uploads_per_user`, `uploads_per_source` or `uploads`), its maximum and
   * the current use. Returns the release function; calling it twice
   * releases once.
   *
   * @example
   * ```ts
   * const release = gate.enter(key, "192.0.2.1");
   * release();
   * ```
   */
  enter(key: string, source: string): () => void {
    const userKey = `${source} ${key}`;
    const mine = this.#byUser.get(userKey) ?? 0;
    const fromSource = this.#bySource.get(source) ?? 0;
    if (mine >= this.perUser) throw busy("uploads_per_user", this.perUser, mine);
    if (fromSource >= this.perSource) throw busy("uploads_per_source", this.perSource, fromSource);
    if (this.#inFlight >= this.total) throw busy("uploads", this.total, this.#inFlight);
    this.#byUser.set(userKey, mine + 1);
    this.#bySource.set(source, fromSource + 1);
    this.#inFlight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inFlight--;
      decrement(this.#byUser, userKey);
      decrement(this.#bySource, source);
    };
  }
}

// Entries at zero are dropped, so the maps only hold what is in flight.
function decrement(counts: Map<string, number>, key: string): void {
  const left = (counts.get(key) ?? 1) - 1;
  if (left > 0) counts.set(key, left);
  else counts.delete(key);
}

function busy(limit: string, max: number, used: number): HttpError {
  return new HttpError(
    429,
    "too_many_uploads",
    `too many large uploads at once (${limit}: ${used} of ${max}); retry shortly`,
    { limit, max, used },
  );
}
