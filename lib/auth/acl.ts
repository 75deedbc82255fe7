/**
 * The per-subject ACL: which subjects a bus user may publish and subscribe
 * to, derived from the rooms they belong to and nothing else.
 *
 * Shared by the auth callout (server) and the client library, which must use
 * the same private inbox prefix or its requests get no replies.
 *
 * @module
 */

import { type SubjectRule, subjectViolation } from "../grammar.ts";

/** The room facts the ACL depends on (a store `Room` has them). */
export interface AclRoom {
  id: string;
  subject: string;
  policy: { persist: boolean };
}

/** NATS permissions as they go into a user JWT. */
export interface UserPermissions {
  pub: { allow: string[]; deny: string[] };
  sub: { allow: string[]; deny: string[] };
}

/** The JetStream stream that backs a persisted room. */
export function roomStreamName(roomId: string): string {
  return `ROOM_${roomId.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

/**
 * The private reply-inbox prefix of a user: `_INBOX.<sign pub hex>`. Clients
 * must connect with this `inboxPrefix`; the shared `_INBOX.>` is never granted,
 * or any user could subscribe to every other user's replies.
 *
 * @example
 * ```ts
 * inboxPrefixFor("ab".repeat(32)); // "_INBOX.abab…ab"
 * ```
 */
export function inboxPrefixFor(signPubHex: string): string {
  return `_INBOX.${signPubHex}`;
}

// Never granted, whatever the allow list says (deny wins in NATS): the system
// account's subjects, the control plane's KV buckets and object store, and the
// JetStream API calls that create, list or delete streams.
const ALWAYS_DENY = [
  "$SYS.>",
  "$KV.>",
  "$O.>",
  "$JS.API.STREAM.CREATE.>",
  "$JS.API.STREAM.DELETE.>",
  "$JS.API.CONSUMER.>",
];

/** Reply inboxes: everyone's, so that a member can answer a request. */
const ANY_INBOX = "_INBOX.*.>";
/** Where the server's notices arrive: nobody else may publish there. */
const NOTICES = "_INBOX.*.unibus.>";

/** A room left out of an ACL, and the subject rule it breaks. */
export interface InexpressibleRoom<R extends AclRoom = AclRoom> {
  room: R;
  rule: SubjectRule;
  message: string;
}

/**
 * Splits rooms into those an ACL can grant and those it cannot: a subject
 * outside `lib/grammar.ts` (data written before the grammar existed, or
 * straight into the store) would otherwise grant a wildcard, a system
 * subject, or break the user JWT for every member of that room.
 *
 * @example
 * ```ts
 * const { granted, inexpressible } = expressibleRooms(await store.listRoomsForMember(pub));
 * for (const x of inexpressible) log.warn("room left out", { room: x.room.id, rule: x.rule });
 * ```
 */
export function expressibleRooms<R extends AclRoom>(
  rooms: R[],
): { granted: R[]; inexpressible: InexpressibleRoom<R>[] } {
  const granted: R[] = [];
  const inexpressible: InexpressibleRoom<R>[] = [];
  for (const room of rooms) {
    const bad = subjectViolation(room.subject);
    if (bad) inexpressible.push({ room, rule: bad.rule, message: bad.message });
    else granted.push(room);
  }
  return { granted, inexpressible };
}

/**
 * The permissions of a user who belongs to `rooms`. Rooms whose subject
 * breaks the grammar grant nothing (see {@linkcode expressibleRooms}), so one
 * bad room never costs a user the others.
 *
 * Replies: a member may publish to any user's inbox (`_INBOX.<hex>.…`), which
 * is how a reply reaches a requester; it cannot subscribe to anyone's but its
 * own, and cannot publish under `_INBOX.*.unibus.>`, where the server's
 * notices arrive. NATS's `allow_responses` is deliberately not used: it lets
 * a client answer any reply subject it set on its own message (including
 * `$JS.API.…`), which turns one room into publish rights everywhere.
 * What the ACL cannot do is tie a reply to its request: which inbox is the
 * right one depends on who signed the request, which NATS never sees, and a
 * reply published on a room subject looks like any message there. So the
 * client library answers only under the signed requester's own inbox
 * (`respond` in lib/client/client.ts); the ACL bounds the rest to the rooms
 * the replier is in.
 *
 * A persisted room adds exactly what reading its history needs: stream info
 * and direct get on that room's stream. No consumer API at all: a consumer
 * made while a member keeps delivering after the member is removed.
 *
 * @example
 * ```ts
 * const perms = userPermissions(pubHex, [{ id: "r1", subject: "agent.scout.in", policy: { persist: false } }]);
 * perms.pub.allow; // ["_INBOX.*.>", "agent.scout.in"]
 * ```
 */
export function userPermissions(signPubHex: string, rooms: AclRoom[]): UserPermissions {
  const inbox = inboxPrefixFor(signPubHex);
  const pub = new Set<string>([ANY_INBOX]);
  const sub = new Set<string>([`${inbox}.>`]);
  for (const room of expressibleRooms(rooms).granted) {
    pub.add(room.subject);
    sub.add(room.subject);
    if (room.policy.persist) {
      const stream = roomStreamName(room.id);
      pub.add(`$JS.API.STREAM.INFO.${stream}`);
      pub.add(`$JS.API.DIRECT.GET.${stream}`);
    }
  }
  return {
    pub: { allow: [...pub].sort(), deny: [...ALWAYS_DENY, NOTICES] },
    sub: { allow: [...sub].sort(), deny: [...ALWAYS_DENY] },
  };
}

/**
 * True when `next` grants nothing that `granted` did not: a connection holding
 * `granted` may keep running; otherwise it must be cut so it re-authenticates.
 *
 * @example
 * ```ts
 * permissionsNarrowed(before, after); // true when a room was removed
 * ```
 */
export function permissionsNarrowed(granted: UserPermissions, next: UserPermissions): boolean {
  const covers = (have: string[], want: string[]) => {
    const set = new Set(want);
    return have.every((s) => set.has(s));
  };
  return !covers(granted.pub.allow, next.pub.allow) || !covers(granted.sub.allow, next.sub.allow);
}
