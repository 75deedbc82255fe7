/**
 * Where a client's requests get their replies: one subscription under its
 * own inbox for all of them, each request a fresh token under it.
 *
 * @module
 */

import { deferred } from "../platform/mod.ts";
import {
  createInbox,
  type Msg,
  type NatsConnection,
  NoRespondersError,
  RequestError,
  TimeoutError,
} from "@nats-io/transport-node";
import { inboxPrefixFor } from "../auth/acl.ts";
import { ClosedError } from "./errors.ts";
import { isReflectedAnswer } from "./reflected.ts";

/**
 * The reply side of a client's requests.
 *
 * @example
 * ```ts
 * const replies = new ReplyInbox(nc, me.signPubHex);
 * const msg = await replies.exchange(wireSubject, packet, 5000);
 * ```
 */
export class ReplyInbox {
  readonly #nc: NatsConnection;
  readonly #signPub: string;
  /** Where replies arrive (`<inbox>.<token>`), once subscribed. */
  #replyInbox: string | null = null;
  /** Requests waiting for their reply, by token. */
  #awaiting = new Map<string, (reply: Msg | Error) => void>();
  #nextToken = 0;

  constructor(nc: NatsConnection, signPub: string) {
    this.#nc = nc;
    this.#signPub = signPub;
  }

  // One request's NATS exchange. Not nats.js request(): per request it makes
  // an error object (with a stack trace) even when the reply comes, and
  // races two promises; on the round trip that was a tenth of a requester's
  // time between the reply's arrival and its verification (measured). The
  // outcome is the same: the first message on a fresh reply subject under
  // this client's inbox, TimeoutError, or NoRespondersError in a
  // RequestError when nobody listens on the room's subject.
  exchange(subject: string, data: Uint8Array, timeoutMs: number): Promise<Msg> {
    const inbox = this.#replyInbox ?? this.#subscribe();
    const token = `${++this.#nextToken}`;
    const { promise, resolve, reject } = deferred<Msg>();
    const timer = setTimeout(() => {
      this.#awaiting.delete(token);
      reject(new TimeoutError());
    }, timeoutMs);
    this.#awaiting.set(token, (reply) => {
      // A persisted room stores the request, and its stream acknowledges it
      // on the same reply subject: that answer is JetStream's, not a
      // member's reply, so the request waits on for the member's.
      if (
        !(reply instanceof Error) && reply.headers?.code !== 503 && isReflectedAnswer(reply)
      ) return;
      clearTimeout(timer);
      this.#awaiting.delete(token);
      if (reply instanceof Error) reject(reply);
      else if (reply.data.length === 0 && reply.headers?.code === 503) {
        const none = new NoRespondersError(subject);
        reject(new RequestError(none.message, { cause: none }));
      } else resolve(reply);
    });
    try {
      this.#nc.publish(subject, data, { reply: `${inbox}${token}` });
    } catch (err) {
      this.#awaiting.get(token)?.(err as Error);
    }
    return promise;
  }

  // The reply subscription, made on the first request: one for all (nats.js
  // renews it across reconnects). Its inbox prefix is random per client, so
  // tokens need only be unique within it; they are not secret either way
  // (every member receiving a request sees its reply subject), which is why
  // a reply is taken only after it verifies for its request.
  #subscribe(): string {
    const inbox = `${createInbox(inboxPrefixFor(this.#signPub))}.`;
    this.#nc.subscribe(`${inbox}*`, {
      callback: (err, msg) => {
        if (err) {
          // The subscription ended (e.g. refused): every waiting request
          // fails with its error, and the next one subscribes again.
          if (this.#replyInbox === inbox) this.#replyInbox = null;
          for (const done of [...this.#awaiting.values()]) done(err);
          return;
        }
        this.#awaiting.get(msg.subject.slice(inbox.length))?.(msg);
      },
    });
    this.#replyInbox = inbox;
    return inbox;
  }

  /** Fails every request still waiting: the client is closing. */
  close(): void {
    for (const done of [...this.#awaiting.values()]) done(new ClosedError());
  }
}
