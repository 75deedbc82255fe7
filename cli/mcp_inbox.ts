/**
 * What `unibus mcp` has received and not yet handed to its agent: per room,
 * the messages (bounded in count and bytes: the oldest go first, and the
 * next read says how many went) and the requests waiting for a reply
 * (bounded in count: a flood of requests is refused, not queued).
 *
 * @module
 */

/** A received message as the agent reads it. */
export interface InboxMessage {
  room: string;
  subject: string;
  sender: string;
  handle: string | null;
  time: string;
  text: string;
  /** Bytes it counts against the bound. */
  size: number;
}

/** A request waiting for the agent's reply. */
export interface PendingRequest {
  request_id: string;
  room: string;
  subject: string;
  sender: string;
  handle: string | null;
  text: string;
}

/** The bounds of one room's buffer. */
export interface InboxLimits {
  messages: number;
  bytes: number;
  requests: number;
}

/** The defaults: 1,000 messages or 4 MiB per room, 100 waiting requests. */
export const DEFAULT_INBOX_LIMITS: InboxLimits = {
  messages: 1000,
  bytes: 4 * 1024 * 1024,
  requests: 100,
};

interface RoomBox {
  messages: InboxMessage[];
  bytes: number;
  dropped: number;
  requests: PendingRequest[];
}

/**
 * The buffers of every room, with waiting reads woken when something comes.
 *
 * @example
 * ```ts
 * const inbox = new Inbox();
 * inbox.add(msg);
 * const { messages, dropped } = await inbox.read({ waitMs: 1000, max: 50 });
 * ```
 */
export class Inbox {
  #rooms = new Map<string, RoomBox>();
  #waiters = new Set<() => void>();
  #limits: InboxLimits;

  constructor(limits: InboxLimits = DEFAULT_INBOX_LIMITS) {
    this.#limits = limits;
  }

  #box(room: string): RoomBox {
    let b = this.#rooms.get(room);
    if (!b) {
      b = { messages: [], bytes: 0, dropped: 0, requests: [] };
      this.#rooms.set(room, b);
    }
    return b;
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Keeps a message; drops the room's oldest beyond the bounds. */
  add(m: InboxMessage): void {
    const b = this.#box(m.room);
    b.messages.push(m);
    b.bytes += m.size;
    while (b.messages.length > this.#limits.messages || b.bytes > this.#limits.bytes) {
      b.bytes -= b.messages.shift()!.size;
      b.dropped++;
    }
    this.#wake();
  }

  /** Keeps a request; false when the room already has as many waiting as allowed. */
  addRequest(r: PendingRequest): boolean {
    const b = this.#box(r.room);
    if (b.requests.length >= this.#limits.requests) return false;
    b.requests.push(r);
    this.#wake();
    return true;
  }

  /** Forgets a room (left or removed): nothing of it is read afterwards. */
  forget(room: string): void {
    this.#rooms.delete(room);
  }

  async #until<T>(take: () => T | null, waitMs: number): Promise<T | null> {
    const now = take();
    if (now !== null || waitMs <= 0) return now;
    return await new Promise<T | null>((resolve) => {
      const done = (v: T | null) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve(v);
      };
      const check = () => {
        const v = take();
        if (v !== null) done(v);
      };
      const timer = setTimeout(() => done(take()), waitMs);
      this.#waiters.add(check);
    });
  }

  /**
   * Up to `max` messages (of `room`, or of every room), oldest first, and how
   * many were dropped before them; waits up to `waitMs` when there are none.
   */
  async read(
    opts: { room?: string; waitMs: number; max: number },
  ): Promise<{ messages: Omit<InboxMessage, "size">[]; dropped: number }> {
    const boxes = () =>
      opts.room !== undefined
        ? [this.#rooms.get(opts.room)].filter((b) => b !== undefined)
        : [...this.#rooms.values()];
    const got = await this.#until(() => {
      const bs = boxes();
      return bs.some((b) => b.messages.length > 0 || b.dropped > 0) ? bs : null;
    }, opts.waitMs) ?? [];
    const messages: InboxMessage[] = [];
    let dropped = 0;
    for (const b of got) {
      dropped += b.dropped;
      b.dropped = 0;
      const take = b.messages.splice(0, Math.max(0, opts.max - messages.length));
      for (const m of take) b.bytes -= m.size;
      messages.push(...take);
    }
    messages.sort((a, b) => a.time < b.time ? -1 : a.time > b.time ? 1 : 0);
    return { messages: messages.map(({ size: _size, ...m }) => m), dropped };
  }

  /** The oldest waiting request of `room`, waiting up to `waitMs`; null when none came. */
  nextRequest(room: string, waitMs: number): Promise<PendingRequest | null> {
    return this.#until(() => this.#rooms.get(room)?.requests.shift() ?? null, waitMs);
  }
}
