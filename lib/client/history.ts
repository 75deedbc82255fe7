/**
 * Reading a persisted room's history: its stream's bounds, then direct gets
 * (the one JetStream call a member's ACL allows on a room's stream, see
 * lib/auth/acl.ts), each packet verified by a history reader of the room.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { inboxPrefixFor, roomStreamName } from "../auth/acl.ts";
import type { Identity } from "../identity/identity.ts";
import { directGets, inSessionOrder, streamBounds } from "./history_reader.ts";
import type { FrameMeta, RoomSession, RoomStats } from "./room_session.ts";

/**
 * The stored messages of `session`'s room from `startSeq`, at most `limit`,
 * in stream order, as they are read and verified; `stats` counts what has
 * been read so far.
 *
 * @example
 * ```ts
 * const { messages } = await readRoomHistory(nc, me, session, { limit: 10, startSeq: 0 });
 * for await (const m of messages) console.log(m.meta.seq);
 * ```
 */
export async function readRoomHistory(
  nc: NatsConnection,
  identity: Identity,
  session: RoomSession,
  opts: { limit: number; startSeq: number },
): Promise<
  { messages: AsyncGenerator<{ meta: FrameMeta; plaintext: Uint8Array }>; stats: RoomStats }
> {
  const { limit, startSeq } = opts;
  if (!session.state.policy.persist) {
    throw new RangeError(`room ${session.roomId} is not persisted`);
  }
  const reader = session.forHistory();
  // Direct gets only: the one JetStream call a member's ACL allows on a
  // room's stream (see lib/auth/acl.ts).
  const stream = roomStreamName(session.roomId);
  const bounds = await streamBounds(nc, { stream, subject: session.wireSubject });
  const from = Math.max(bounds?.first ?? 0, startSeq);
  const inboxPrefix = inboxPrefixFor(identity.signPubHex);
  async function* messages() {
    if (limit === 0 || bounds === null || from > bounds.last) return;
    let given = 0;
    // A packet resent while its stream had no leader (durable_publish.ts)
    // is stored after later ones of the same sender; the ratchet only
    // moves forward, so each sender's packets are read in their own order
    // (within history_reader.ts's window), and given back in stream order.
    const packets = directGets(nc, { stream, from, to: bounds.last, inboxPrefix });
    for await (
      const [seq, r] of inSessionOrder(
        packets,
        (d) => reader.receive(d),
        (r) => r.kind === "delivered",
      )
    ) {
      if (r.kind !== "delivered") continue;
      for (const f of r.frames) {
        yield { meta: { ...f.meta, seq }, plaintext: f.plaintext };
        if (++given >= limit) return;
      }
    }
  }
  return { messages: messages(), stats: reader.stats };
}

/**
 * The last `n` items of `items`, in order, holding at most `n` at a time.
 *
 * @example
 * ```ts
 * async function* count() { for (let i = 0; i < 5; i++) yield i; }
 * await lastOf(count(), 2); // [3, 4]
 * ```
 */
export async function lastOf<T>(items: AsyncIterable<T>, n: number): Promise<T[]> {
  const ring: T[] = [];
  // Where the oldest item held is, once the ring is full.
  let oldest = 0;
  for await (const item of items) {
    if (n === 0) continue;
    if (ring.length < n) {
      ring.push(item);
      continue;
    }
    ring[oldest] = item;
    oldest = (oldest + 1) % n;
  }
  return [...ring.slice(oldest), ...ring.slice(0, oldest)];
}
