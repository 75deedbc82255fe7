/**
 * "This room changed" notices, so that members learn a new epoch at once
 * instead of at their next message: after a removal the remaining members
 * must stop sending under the key the removed member still holds.
 *
 * A notice goes to each affected user's private inbox
 * (`<inbox prefix>.unibus.room`, the room id as payload, the notice header
 * set). It carries no authority: a client that gets one refetches the room
 * and verifies the signed log as always.
 *
 * @module
 */

import { headers, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { inboxPrefixFor } from "../../lib/auth/acl.ts";
import { NOTICE_HEADER, ROOM_NOTICE_SUFFIX } from "../../lib/notices.ts";

// The subject suffix, under a user's inbox prefix, of room-change notices;
// one constant with the client that listens (lib/notices.ts).
export { ROOM_NOTICE_SUFFIX };

/**
 * The headers every notice of the server carries: clients act only on a
 * message that has them and none that nats-server puts on JetStream's
 * answers (lib/notices.ts `isServerNotice` says why).
 *
 * @example
 * ```ts
 * nc.publish(subject, "refresh", { headers: noticeHeaders() });
 * ```
 */
export function noticeHeaders(): MsgHdrs {
  const h = headers();
  h.set(NOTICE_HEADER, "1");
  return h;
}

/**
 * A function that tells `users` that room `roomId` changed.
 *
 * @example
 * ```ts
 * const notify = roomChangeNotifier(nc);
 * notify(roomId, [aliceHex, bobHex]);
 * ```
 */
export function roomChangeNotifier(nc: NatsConnection): (roomId: string, users: string[]) => void {
  return (roomId, users) => {
    for (const u of new Set(users)) {
      nc.publish(`${inboxPrefixFor(u)}.${ROOM_NOTICE_SUFFIX}`, roomId, {
        headers: noticeHeaders(),
      });
    }
  };
}
