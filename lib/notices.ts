/**
 * The subjects of the server's notices to a user, one protocol constant for
 * the server that sends them (`server/auth/enforcer.ts`,
 * `server/rooms/notices.ts`), the client that listens (`lib/client/client.ts`)
 * and the ACL that keeps members from forging them (`lib/auth/acl.ts`).
 * Spelled in several places, a rename in one would make clients miss every
 * notice silently. The payloads and when each is sent: protocol.md §3.3.
 *
 * @example
 * ```ts
 * import { inboxPrefixFor } from "./auth/acl.ts";
 * import { ROOM_NOTICE_SUFFIX } from "./notices.ts";
 * const subject = `${inboxPrefixFor(signPubHex)}.${ROOM_NOTICE_SUFFIX}`;
 * ```
 * @module
 */

/** The first token after a user's inbox prefix under which every notice lives. */
export const NOTICE_TOKEN = "unibus";

/** "Refresh your session": the user gained rights (payload `refresh`). */
export const REFRESH_NOTICE_SUFFIX = `${NOTICE_TOKEN}.refresh`;

/** "A room you are in changed" (payload: the room id). */
export const ROOM_NOTICE_SUFFIX = `${NOTICE_TOKEN}.room`;

/**
 * A persisted room's stream acks a packet here, under the sender's own inbox
 * (`<inbox>.unibus.ack.<Nats-Msg-Id>`): under the notice token, so no member
 * can forge an ack (lib/client/durable_publish.ts).
 */
export const ACK_SUFFIX = `${NOTICE_TOKEN}.ack`;

/**
 * The header that marks a notice the server sent: `Unibus-Notice: 1`.
 *
 * No member may publish under another user's `unibus.` inbox (the ACL
 * denies it), but JetStream answers to whatever reply subject a user set:
 * a member of a persisted room can have a stream ack, or a direct get of a
 * message it stored itself (its chosen bytes and headers), delivered to a
 * victim's notice subject. Those answers are told apart by what nats-server
 * itself puts on them and a user cannot take off: an ack has no headers at
 * all, a direct get answer always carries `Nats-Stream`, and a "no
 * responders" answer carries a status. So a notice counts only with this
 * header and without either of theirs; see {@linkcode isServerNotice}.
 */
export const NOTICE_HEADER = "Unibus-Notice";

/** The header set of a notice the server sends ({@linkcode NOTICE_HEADER}). */
export interface NoticeHeaderSource {
  has(name: string): boolean;
  get(name: string): string;
  readonly code?: number;
}

/**
 * True when a message on a notice subject can only be the server's notice
 * (see {@linkcode NOTICE_HEADER} for the answers it rules out).
 *
 * @example
 * ```ts
 * nc.subscribe(subject, { callback: (_e, msg) => { if (isServerNotice(msg.headers)) act(); } });
 * ```
 */
export function isServerNotice(headers: NoticeHeaderSource | undefined): boolean {
  if (!headers) return false;
  if (headers.code !== undefined && headers.code !== 0 && headers.code !== 200) return false;
  return headers.get(NOTICE_HEADER) === "1" && !headers.has("Nats-Stream") &&
    !headers.has("Nats-Sequence");
}
