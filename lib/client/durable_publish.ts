/**
 * Publishing to a persisted room so that the message is stored even when
 * the room's stream is between leaders. A plain publish reaches the live
 * members whatever happens, but JetStream stores it only if the stream has
 * a leader at that moment: after a node of a cluster dies, the streams it
 * led have none for the few seconds of a RAFT election, and everything
 * published meanwhile was missing from history.
 *
 * So each packet carries a `Nats-Msg-Id` and asks the stream for an ack on
 * this client's own inbox, under `unibus.ack.`; until the ack comes the same
 * bytes are sent again every second (bounded). The stream stores one copy
 * (duplicates within its window are dropped by id), and a member that sees
 * the copy live drops it as a replay (the packet is signed once), so nothing
 * is delivered twice. No bus user can publish under `_INBOX.*.unibus.>`
 * (lib/auth/acl.ts), but any member of any persisted room can have
 * JetStream answer there, by setting the reply subject of its own publish
 * or direct get. So an ack counts only if it is what the room's own stream
 * sends: no headers (a direct get answer always has `Nats-Stream`, with
 * the asker's stored bytes as its body) and the packet's stream named in
 * it (an ack from the asker's own stream names that one). What is left: a
 * member of the same room, who saw the packet's reply subject, can have the
 * room's stream ack its own packet there; the sender then stops resending a
 * packet the stream may not hold. It cannot make anything be stored.
 * Publishes never wait for the ack (a stalled stream must not stall live
 * traffic); {@linkcode DurablePublisher.settled} does.
 *
 * @module
 */

import { headers, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { ACK_SUFFIX } from "../notices.ts";
import { unrefTimer } from "../platform/mod.ts";

interface Pending {
  subject: string;
  /** The stream whose ack settles it. */
  stream: string;
  data: Uint8Array;
  firstAt: number;
  lastAt: number;
}

/** Tuning; the defaults suit a cluster's leader elections (seconds). */
export interface DurableOptions {
  /** Resend an unacknowledged packet after this long. Default 1 s. */
  retryMs?: number;
  /** Give a packet up after this long without an ack. Default 60 s. */
  giveUpMs?: number;
}

/**
 * Sends packets to persisted rooms until their stream acknowledges them.
 *
 * @example
 * ```ts
 * const durable = new DurablePublisher(nc, "_INBOX.abab…ab");
 * durable.send("$UNIBUS.ROOM.0123…cdef", "ROOM_0123…cdef", packet);
 * await durable.settled(); // every packet stored (or an error naming how many were not)
 * durable.close();
 * ```
 */
export class DurablePublisher {
  readonly #nc: NatsConnection;
  readonly #prefix: string;
  readonly #retryMs: number;
  readonly #giveUpMs: number;
  readonly #pending = new Map<string, Pending>();
  readonly #sub: Subscription;
  readonly #timer: ReturnType<typeof setInterval>;
  #abandoned = 0;
  #waiters: Array<() => void> = [];

  constructor(nc: NatsConnection, inboxPrefix: string, opts: DurableOptions = {}) {
    this.#nc = nc;
    this.#prefix = `${inboxPrefix}.${ACK_SUFFIX}`;
    this.#retryMs = opts.retryMs ?? 1000;
    this.#giveUpMs = opts.giveUpMs ?? 60_000;
    this.#sub = nc.subscribe(`${this.#prefix}.*`, {
      callback: (_err, msg) => {
        const id = msg?.subject.slice(this.#prefix.length + 1);
        const pending = id ? this.#pending.get(id) : undefined;
        if (!id || !pending || msg.headers) return;
        try {
          const ack = msg.json<{ stream?: unknown; seq?: number; error?: unknown }>();
          // An error ack (e.g. 503, no leader yet) leaves it pending: resent.
          if (ack.error || typeof ack.seq !== "number" || ack.stream !== pending.stream) return;
        } catch {
          return; // not an ack at all: ignored, the packet stays pending
        }
        this.#pending.delete(id);
        this.#wake();
      },
    });
    this.#timer = setInterval(() => this.#resend(), Math.max(50, this.#retryMs / 2));
    // A pending resend must not keep a finished program alive.
    unrefTimer(this.#timer);
  }

  /** Publishes `data` on `subject` and keeps resending it until `stream` acks it. */
  send(subject: string, stream: string, data: Uint8Array): void {
    const id = crypto.randomUUID().replaceAll("-", "");
    const now = Date.now();
    this.#pending.set(id, { subject, stream, data, firstAt: now, lastAt: now });
    this.#publish(id, subject, data);
  }

  #publish(id: string, subject: string, data: Uint8Array): void {
    const h = headers();
    h.set("Nats-Msg-Id", id);
    this.#nc.publish(subject, data, { reply: `${this.#prefix}.${id}`, headers: h });
  }

  #resend(): void {
    const now = Date.now();
    for (const [id, p] of this.#pending) {
      if (now - p.firstAt > this.#giveUpMs) {
        this.#pending.delete(id);
        this.#abandoned++;
        continue;
      }
      if (now - p.lastAt < this.#retryMs || this.#nc.isClosed()) continue;
      p.lastAt = now;
      try {
        this.#publish(id, p.subject, p.data);
      } catch { /* closed or reconnecting: the next tick tries again */ }
    }
    this.#wake();
  }

  #wake(): void {
    if (this.#pending.size === 0) this.#waiters.splice(0).forEach((w) => w());
  }

  /** Packets sent and not yet acknowledged. */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * Resolves once every packet sent so far is stored; rejects if some were
   * given up (never acknowledged within `giveUpMs`).
   */
  async settled(): Promise<void> {
    if (this.#pending.size > 0) {
      await new Promise<void>((r) => this.#waiters.push(r));
    }
    if (this.#abandoned > 0) {
      const n = this.#abandoned;
      this.#abandoned = 0;
      throw new Error(`${n} message(s) to a persisted room were never stored`);
    }
  }

  /** Stops resending and releases waiters (what is pending stays unsent). */
  close(): void {
    clearInterval(this.#timer);
    this.#sub.unsubscribe();
    this.#waiters.splice(0).forEach((w) => w());
  }
}
