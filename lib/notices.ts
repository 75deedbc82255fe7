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
