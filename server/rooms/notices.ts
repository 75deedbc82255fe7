/**
 * "This room changed" notices, so that members learn a new epoch at once
 * instead of at their next message: after a removal the remaining members
 * must stop sending under the key the removed member still holds.
 *
 * A notice goes to each affected user's private inbox
 * (`<inbox prefix>.unibus.room`, the room id as payload). It carries no
 * authority: a client that gets one refetches the room and verifies the
 * signed log as always.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { inboxPrefixFor } from "../../lib/auth/acl.ts";
import { ROOM_NOTICE_SUFFIX } from "../../lib/notices.ts";

// The subject suffix, under a user's inbox prefix, of room-change notices;
// one constant with the client that listens (lib/notices.ts).
export { ROOM_NOTICE_SUFFIX };

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
      nc.publish(`${inboxPrefixFor(u)}.${ROOM_NOTICE_SUFFIX}`, roomId);
    }
  };
}
