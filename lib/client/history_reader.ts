/**
 * Reading a persisted room's stream fast with bounded memory: direct gets by
 * sequence kept in flight in a bounded window (one round trip per stored
 * packet in series read only ~3,000 packets/s on loopback), and each sender
 * session's packets handed to the verifier in index order within a bounded
 * reorder window, the results given back in stream order.
 *
 * nats-server 2.10 answers one message per direct get (the `batch` form came
 * with 2.11), and a member's ACL allows only stream info and this direct get
 * (docs/protocol.md §2.10), so many single gets in flight is what is left.
 *
 * @module
 */

import { createInbox, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { packetLane } from "../e2e/packet.ts";

/** One stored packet, by stream sequence. */
export interface StoredPacket {
  seq: number;
  data: Uint8Array;
}

/** Direct gets kept in flight at once by {@linkcode directGets}. */
export const HISTORY_GETS_IN_FLIGHT = 256;

/** How long {@linkcode directGets} waits for the next answer before failing. */
export const HISTORY_GET_TIMEOUT_MS = 10_000;

/**
 * The reorder window of {@linkcode inSessionOrder}: a packet is handed to the
 * verifier at the latest once this many later entries (or this many bytes of
 * them) have been read. A packet a sender resent while its stream had no
 * leader (lib/client/durable_publish.ts: every second, for up to 60 s) is
 * stored after later packets of its session; within the window it is still
 * read before them, beyond it the ratchet has passed its index and it counts
 * as `replayed`.
 */
export const HISTORY_REORDER_ENTRIES = 16_384;

/** The byte bound of the reorder window (what it holds of packets' bytes). */
export const HISTORY_REORDER_BYTES = 32 * 1024 * 1024;

/** What {@linkcode directGets} reads, and how. */
export interface DirectGetOptions {
  /** The stream (`ROOM_<room id>`). */
  stream: string;
  /** First and last sequence to read, inclusive. */
  from: number;
  to: number;
  /** The reader's own inbox prefix, `_INBOX.<sign pub hex>` (lib/auth/acl.ts). */
  inboxPrefix: string;
  /** Gets outstanding at most; default {@linkcode HISTORY_GETS_IN_FLIGHT}. */
  inFlight?: number;
  /** Default {@linkcode HISTORY_GET_TIMEOUT_MS}. */
  timeoutMs?: number;
}

const encoder = new TextEncoder();

/**
 * The stored packets of `stream` from `from` to `to` in sequence order, read
 * by direct get (`$JS.API.DIRECT.GET.<stream>` with `{"seq": N}`, exactly
 * the request of docs/protocol.md §2.10), at most `inFlight` outstanding. A
 * sequence answered 404 (deleted, or removed by the stream's limits) is
 * skipped; any other status, or no answer within `timeoutMs`, is thrown.
 *
 * Not nats.js's `direct.getMessage` once per sequence: each of its requests
 * builds two error objects with stack traces and a timer, and is written out
 * on its own; measured, that capped 256 gets in flight at ~13,000/s on
 * loopback. Here the requests of a refill go out in one write and the
 * answers come to one subscription.
 *
 * @example
 * ```ts
 * for await (const p of directGets(nc, { stream, from: 1, to: 1000, inboxPrefix })) use(p);
 * ```
 */
export async function* directGets(
  nc: NatsConnection,
  opts: DirectGetOptions,
): AsyncGenerator<StoredPacket> {
  const { stream, from, to } = opts;
  if (from > to) return;
  const inFlight = Math.max(1, opts.inFlight ?? HISTORY_GETS_IN_FLIGHT);
  const timeoutMs = opts.timeoutMs ?? HISTORY_GET_TIMEOUT_MS;
  // A fresh random token under the reader's own prefix, as nats.js's request
  // inbox has: other users may publish to any inbox (replies), so without
  // it they could answer for the stream. With it they cannot know where to,
  // and an answer still has to pass the packet's verification; what a
  // forged one could do at most is hide a message.
  const inbox = createInbox(opts.inboxPrefix);
  const subject = `$JS.API.DIRECT.GET.${stream}`;
  const answers = new Map<number, Msg>();
  let next = from; // the sequence to yield next
  let asked = from; // the next sequence to ask for
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  const sub = nc.subscribe(`${inbox}.*`, {
    callback: (err, msg) => {
      if (err) failure ??= err;
      else {
        const seq = Number(msg.subject.slice(inbox.length + 1));
        // Only the stream's own answer for that sequence: anything else here
        // was aimed at this inbox by someone who guessed it.
        if (!answersFor(msg, stream, seq)) return;
        if (Number.isSafeInteger(seq) && seq >= next && seq < asked) answers.set(seq, msg);
        if (seq !== next) return;
      }
      wake?.();
    },
  });
  // Refilled in runs (once half the window is answered), so that the
  // requests of one refill leave in one write.
  const ask = () => {
    if (asked - next > inFlight / 2) return;
    while (asked <= to && asked - next < inFlight) {
      nc.publish(subject, encoder.encode(`{"seq":${asked}}`), { reply: `${inbox}.${asked}` });
      asked++;
    }
  };
  try {
    ask();
    while (next <= to) {
      const m = answers.get(next);
      if (!m) {
        if (failure) throw failure;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const arrived = await new Promise<boolean>((resolve) => {
          wake = () => resolve(true);
          timer = setTimeout(() => resolve(false), timeoutMs);
        }).finally(() => {
          wake = null;
          clearTimeout(timer);
        });
        if (failure) throw failure;
        if (!arrived && !answers.has(next)) {
          throw new Error(`no answer from ${stream} to a direct get of ${next} in ${timeoutMs} ms`);
        }
        continue;
      }
      const seq = next++;
      answers.delete(seq);
      ask();
      const code = m.headers?.code;
      if (code === 404) continue;
      if (code !== 0) {
        throw new Error(
          `${stream}: direct get of ${seq} answered ${code ?? "without headers"} ${
            m.headers?.description ?? ""
          }`.trim(),
        );
      }
      // A copy: the answer is a view of a whole socket read (never rewritten,
      // tests/nats_message_buffers_test.ts), which a packet waiting in the
      // reorder window, or a sign-only frame a reader keeps, would pin.
      yield { seq, data: new Uint8Array(m.data) };
    }
  } finally {
    sub.unsubscribe();
  }
}

// A direct get's answer: a status (404, or an error), or the stored message
// with the stream and sequence nats-server names in its headers.
function answersFor(msg: Msg, stream: string, seq: number): boolean {
  const h = msg.headers;
  if (!h) return false;
  if (h.code !== 0) return true;
  return h.get("Nats-Stream") === stream && h.get("Nats-Sequence") === String(seq);
}

/**
 * The first and last sequence of `subject`'s messages in `stream`, or null
 * when it holds none, read with two direct gets (`next_by_subj` from 1 and
 * `last_by_subj`): a member's ACL allows direct get on its rooms' streams
 * and no other JetStream call, stream info included.
 *
 * @example
 * ```ts
 * const bounds = await streamBounds(nc, { stream: "ROOM_…", subject: "$UNIBUS.ROOM.…" });
 * if (bounds) for await (const p of directGets(nc, { stream, from: bounds.first, to: bounds.last, inboxPrefix })) use(p);
 * ```
 */
export async function streamBounds(
  nc: NatsConnection,
  opts: { stream: string; subject: string; timeoutMs?: number },
): Promise<{ first: number; last: number } | null> {
  const timeout = opts.timeoutMs ?? HISTORY_GET_TIMEOUT_MS;
  const get = async (body: Record<string, unknown>): Promise<number | null> => {
    const m = await nc.request(
      `$JS.API.DIRECT.GET.${opts.stream}`,
      encoder.encode(JSON.stringify(body)),
      { timeout },
    );
    const h = m.headers;
    if (h?.code === 404) return null;
    const seq = Number(h?.get("Nats-Sequence"));
    if (h?.code !== 0 || h.get("Nats-Stream") !== opts.stream || !Number.isSafeInteger(seq)) {
      throw new Error(
        `${opts.stream}: direct get answered ${h?.code ?? "without headers"} ${
          h?.description ?? ""
        }`.trim(),
      );
    }
    return seq;
  };
  const [first, last] = await Promise.all([
    get({ seq: 1, next_by_subj: opts.subject }),
    get({ last_by_subj: opts.subject }),
  ]);
  return first === null || last === null ? null : { first, last };
}

interface Held {
  seq: number;
  /** Dropped once received: a done entry may linger in its session's heap. */
  data: Uint8Array | null;
  size: number;
  chain: string;
  index: number;
  done: boolean;
  result: unknown;
}

/** A binary min-heap of one session's waiting packets, by (index, seq). */
class SessionHeap {
  readonly #a: Held[] = [];
  get size(): number {
    return this.#a.length;
  }
  get top(): Held {
    return this.#a[0];
  }
  #less(i: number, j: number): boolean {
    const [x, y] = [this.#a[i], this.#a[j]];
    return x.index < y.index || (x.index === y.index && x.seq < y.seq);
  }
  #swap(i: number, j: number): void {
    [this.#a[i], this.#a[j]] = [this.#a[j], this.#a[i]];
  }
  push(h: Held): void {
    this.#a.push(h);
    for (let i = this.#a.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (!this.#less(i, p)) break;
      this.#swap(i, p);
      i = p;
    }
  }
  pop(): Held {
    const top = this.#a[0];
    const last = this.#a.pop()!;
    if (this.#a.length > 0) {
      this.#a[0] = last;
      for (let i = 0;;) {
        const [l, r] = [2 * i + 1, 2 * i + 2];
        let m = i;
        if (l < this.#a.length && this.#less(l, m)) m = l;
        if (r < this.#a.length && this.#less(r, m)) m = r;
        if (m === i) break;
        this.#swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

/** Sessions whose last accepted index {@linkcode inSessionOrder} remembers. */
const REMEMBERED_SESSIONS = 65_536;

/**
 * Runs `receive` over stored packets so that each sender session's packets
 * are received in index order (its ratchet only moves forward), while the
 * results come back in stream order: `[seq, receive's result]`.
 *
 * The oldest packet is received as soon as nothing can still come before
 * it: it is its session's index 0, or the index right after the last one
 * `accepted` (e.g. delivered) in that session, or it is no packet at all.
 * Otherwise (a gap: a resent packet may still be on its way, or the read
 * began mid-session) it waits until the window is full. So in-order history
 * streams through at once, and memory is bounded by
 * {@linkcode HISTORY_REORDER_ENTRIES} and {@linkcode HISTORY_REORDER_BYTES}
 * (a single larger packet passes alone).
 *
 * @example
 * ```ts
 * const read = inSessionOrder(packets, (d) => reader.receive(d), (r) => r.kind === "delivered");
 * for await (const [seq, r] of read) if (r.kind === "delivered") show(seq, r.frames);
 * ```
 */
export async function* inSessionOrder<R>(
  packets: AsyncIterable<StoredPacket>,
  receive: (data: Uint8Array) => R,
  accepted: (result: R) => boolean = () => false,
  window: { entries?: number; bytes?: number } = {},
): AsyncGenerator<[number, R]> {
  const maxEntries = window.entries ?? HISTORY_REORDER_ENTRIES;
  const maxBytes = window.bytes ?? HISTORY_REORDER_BYTES;
  // The window, oldest first (from `head`), and its packets' bytes.
  let held: Held[] = [];
  let head = 0;
  let bytes = 0;
  // The window's packets per sender session, lowest index first; received
  // ones are dropped lazily when they reach the top.
  const waiting = new Map<string, SessionHeap>();
  // Per session, the highest index `receive` accepted: the reader's chain
  // has passed it, so anything at or below it is a replay whatever comes.
  // Forgetting a session only makes its next packet wait for the window.
  const last = new Map<string, number>();
  const receiveOne = (h: Held) => {
    h.result = receive(h.data!);
    h.data = null;
    h.done = true;
    if (accepted(h.result as R) && h.index > (last.get(h.chain) ?? -1)) {
      last.delete(h.chain);
      last.set(h.chain, h.index);
      if (last.size > REMEMBERED_SESSIONS) last.delete(last.keys().next().value!);
    }
  };
  const ready = (h: Held) =>
    h.done || h.index === 0 || h.chain.startsWith("seq:") || last.get(h.chain) === h.index - 1;
  // The oldest packet leaves the window: first every packet of its session
  // in the window with a lower index (resent copies stored later), in index
  // order, then itself.
  const release = (): [number, R] => {
    const h = held[head];
    // Released: nothing of it stays reachable from the window.
    held[head++] = undefined as unknown as Held;
    if (head >= 4096 && head * 2 >= held.length) {
      held = held.slice(head);
      head = 0;
    }
    bytes -= h.size;
    if (!h.done) {
      const heap = waiting.get(h.chain)!;
      while (heap.size > 0 && (heap.top.done || heap.top.index < h.index)) {
        const o = heap.pop();
        if (!o.done) receiveOne(o);
      }
      receiveOne(h);
      while (heap.size > 0 && heap.top.done) heap.pop();
      if (heap.size === 0) waiting.delete(h.chain);
    }
    return [h.seq, h.result as R];
  };
  for await (const { seq, data } of packets) {
    // Unverified header fields, for the order only; an entry that is no
    // packet is its own "session" (receive() counts it as invalid).
    const at = packetLane(data);
    const chain = at?.lane ?? `seq:${seq}`;
    const index = at?.index ?? 0;
    const h: Held = { seq, data, size: data.length, chain, index, done: false, result: undefined };
    held.push(h);
    bytes += data.length;
    let heap = waiting.get(chain);
    if (!heap) waiting.set(chain, heap = new SessionHeap());
    heap.push(h);
    while (
      held.length - head > 0 &&
      (held.length - head > maxEntries || (bytes > maxBytes && held.length - head > 1) ||
        ready(held[head]))
    ) {
      yield release();
    }
  }
  while (held.length - head > 0) yield release();
}
