/**
 * Finds stored rooms whose subject breaks `lib/grammar.ts` (written by an
 * earlier version, before the grammar, or straight into the store) and says
 * so once at start. Such rooms grant nothing: the ACL builder leaves them
 * out of every login and every re-check, so the report is for the operator,
 * not a gate.
 *
 * @module
 */

import { expressibleRooms, type InexpressibleRoom } from "../../lib/auth/acl.ts";
import type { Logger } from "../../lib/log.ts";
import type { Room, Store } from "../../lib/store/store.ts";

/**
 * Logs one line per room with an inexpressible subject (only rooms with
 * members can grant anything, so those are the ones looked at) and returns
 * them. The store contract has no "all rooms" read; the members' rooms are
 * gathered user by user, once, at start.
 *
 * @example
 * ```ts
 * const bad = await reportInexpressibleRooms(store, log);
 * ```
 */
export async function reportInexpressibleRooms(
  store: Store,
  log: Logger,
): Promise<InexpressibleRoom<Room>[]> {
  const rooms = new Map<string, Room>();
  for (const user of await store.listUsers()) {
    for (const room of await store.listRoomsForMember(user.signPub)) rooms.set(room.id, room);
  }
  const { inexpressible } = expressibleRooms([...rooms.values()]);
  for (const x of inexpressible) {
    log.warn("room grants nothing: its stored subject breaks the subject grammar", {
      room: x.room.id,
      rule: x.rule,
      subject: x.room.subject,
      createdBy: x.room.createdBy,
    });
  }
  if (inexpressible.length > 0) {
    log.warn("rooms with inexpressible subjects", { count: inexpressible.length });
  }
  return inexpressible;
}
