/**
 * Receiving a room's packets: a subscription on the room's wire subject whose
 * packets are verified, decrypted and handed to the program in order, one at
 * a time; a packet of an epoch the client does not know yet makes it learn
 * the room again and try the same packet once more.
 *
 * @module
 */

import type { NatsConnection, Subscription as NatsSubscription } from "@nats-io/transport-node";
import { inboxPrefixFor } from "../auth/acl.ts";
import { ACK_SUFFIX } from "../notices.ts";
import { isReflectedAnswer } from "./reflected.ts";
import type { FrameMeta, RoomSession, RoomStats } from "./room_session.ts";
import type { ClientFailure } from "./types.ts";

/** What receiving needs of its client. */
export interface ReceivingDeps {
  /** Learns the room again (a newer epoch, or its key). */
  reload(id: string): Promise<unknown>;
  /** Reports a failure nobody awaits (the client's onError). */
  failed(event: { room: string | null; what: ClientFailure; error: unknown }): void;
  /** Marks the receive state for a write. */
  touch(): void;
  /** The subscription ended (e.g. its subject is no longer granted). */
  ended(sub: NatsSubscription): void;
}

/**
 * Subscribes to `session`'s room and hands each message to `handler`.
 *
 * @example
 * ```ts
 * const { sub, drained } = subscribeToRoom(nc, session, (meta, text) => show(meta, text), deps);
 * ```
 */
export function subscribeToRoom(
  nc: NatsConnection,
  session: RoomSession,
  handler: (meta: FrameMeta, plaintext: Uint8Array) => void,
  deps: ReceivingDeps,
): { sub: NatsSubscription; stats: RoomStats; drained(): Promise<void> } {
  const plain = !session.state.policy.encrypt && !session.state.policy.sign;
  let queue: Promise<void> = Promise.resolve();
  let pending = 0;
  const stats = session.stats;
  const handle = async (data: Uint8Array, reply: string | undefined) => {
    if (plain) {
      stats.delivered++;
      handler({
        roomId: session.roomId,
        subject: session.subject,
        sender: "",
        epoch: 0,
        session: "",
        index: 0,
        encrypted: false,
        sentAt: null,
        seq: null,
      }, data);
      return;
    }
    let result = session.receive(data);
    // A newer epoch than we know (the room changed), or an epoch whose key
    // is not uploaded yet: learn, then try the same packet again. Nothing
    // is consumed from a chain until the packet is accepted, so a retry is
    // exact.
    for (let attempt = 0; attempt < 4; attempt++) {
      // (A missing key is only worth waiting for while the current epoch's
      // is missing too; an old epoch's key will not arrive by waiting.)
      const retry = result.kind === "stale" ||
        (result.kind === "dropped" && result.reason === "noKey" &&
          session.keyFor(session.state.epoch) === undefined);
      if (!retry) break;
      if (result.kind === "dropped") stats.noKey--; // counted only if it stays undecryptable
      if (attempt > 0) await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
      await deps.reload(session.roomId).catch((error) =>
        deps.failed({ room: session.roomId, what: "reload", error })
      );
      result = session.receive(data);
    }
    if (result.kind === "stale") stats.noKey++;
    if (result.kind === "delivered") {
      deps.touch();
      // A persisted room's packets ask the stream for an ack under the
      // sender's `unibus.ack.` inbox (durable_publish.ts): that is no
      // request, and respond() would refuse it, so it is not shown as one.
      const asks = reply !== undefined && !reply.startsWith(
        `${inboxPrefixFor(result.frames[0]?.meta.sender ?? "")}.${ACK_SUFFIX}.`,
      );
      for (const f of result.frames) handler(asks ? { ...f.meta, reply } : f.meta, f.plaintext);
    }
  };
  const sub: NatsSubscription = nc.subscribe(session.wireSubject, {
    callback: (err, msg) => {
      // An error ends the subscription (e.g. the subject is no longer
      // granted after a reconnect); it carries no message to handle.
      if (err) {
        deps.ended(sub);
        return;
      }
      if (!msg) return;
      // A plain room has no signature to check: JetStream's answers aimed
      // at its subject are told apart by their marks (reflected.ts).
      if (plain && isReflectedAnswer(msg)) {
        stats.invalid++;
        return;
      }
      // Encrypted rooms read the packet in place: nats.js hands each message
      // a view of a buffer it never writes again (every socket read is a
      // fresh buffer, a message split across reads is joined into a new
      // one; tests/nats_message_buffers_test.ts), and what the handler gets
      // is freshly decrypted, so nothing it keeps or changes is shared.
      // Other rooms hand the handler views of the packet itself: a copy, so
      // a handler does not pin a whole read buffer, nor see another
      // subscription's changes to the same bytes.
      const data = session.state.policy.encrypt ? msg.data : new Uint8Array(msg.data);
      const reply = msg.reply || undefined;
      pending++;
      if (pending === 1) {
        // Fast path: nothing queued, handle synchronously where possible.
        queue = handle(data, reply).finally(() => pending--);
      } else {
        queue = queue.then(() => handle(data, reply)).finally(() => pending--);
      }
    },
  });
  return { sub, stats, drained: () => queue };
}
