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
import { NOTICE_TOKEN } from "../notices.ts";

/** The room facts the ACL depends on (a store `Room` has them). */
export interface AclRoom {
  id: string;
  subject: string;
  policy: { persist: boolean };
  /** The creator; with `createdAt`, decides which rooms an over-full ACL keeps. */
  createdBy?: string;
  createdAt?: number;
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
 * The namespace of persisted rooms' packets in the users' account. The
 * room's stream lives in another account (server/nats/config.ts says why)
 * and takes them in through a service import of this namespace: a plain
 * room subject cannot be imported, since rooms are made at run time and
 * imports are fixed in the server's configuration. Room subjects never
 * start with `$` (lib/grammar.ts), so no room sits on this namespace.
 */
export const PERSISTED_ROOM_PREFIX = "$UNIBUS.ROOM";

/**
 * The NATS subject a room's packets travel on: its own subject, or, for a
 * persisted room, `$UNIBUS.ROOM.<room id>`, where its stream takes them in.
 *
 * @example
 * ```ts
 * wireSubject({ id: "0123456789abcdef0123456789abcdef", subject: "chat.ops", policy: { persist: true } });
 * // "$UNIBUS.ROOM.0123456789abcdef0123456789abcdef"
 * ```
 */
export function wireSubject(room: Pick<AclRoom, "id" | "subject" | "policy">): string {
  return room.policy.persist ? persistedRoomSubject(room.id) : room.subject;
}

/**
 * The wire subject of a persisted room (see {@linkcode wireSubject}).
 *
 * @example
 * ```ts
 * persistedRoomSubject("0123456789abcdef0123456789abcdef"); // "$UNIBUS.ROOM.0123…cdef"
 * ```
 */
export function persistedRoomSubject(roomId: string): string {
  return `${PERSISTED_ROOM_PREFIX}.${roomId.replace(/[^A-Za-z0-9_-]/g, "_")}`;
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
// account's subjects, KV and object store subjects, and the JetStream API
// calls that create, list or delete streams. The users' account has none of
// these (no JetStream, no control plane: server/nats/config.ts); the list
// keeps a mistaken import from becoming a grant.
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
const NOTICES = `_INBOX.*.${NOTICE_TOKEN}.>`;

/** A room left out of an ACL, and the subject rule it breaks. */
export interface InexpressibleRoom<R extends AclRoom = AclRoom> {
  room: R;
  rule: SubjectRule;
  message: string;
}

/** A room left out of one user's ACL: its subject breaks the grammar, or the ACL is full. */
export interface LeftOutRoom<R extends AclRoom = AclRoom> {
  room: R;
  rule: SubjectRule | "acl_full";
  message: string;
}

/**
 * Most bytes of subjects one user's permissions may list. The user JWT
 * carries every room subject (twice) and goes to nats-server base64-encoded
 * inside the callout's response, itself base64-encoded: past nats-server's
 * `max_payload` (1 MiB) the response cannot be sent and the login is refused.
 * Anyone may add anyone to a room without consent, so about ten users at their
 * room quota could otherwise lock a user out of NATS (found by probing). A
 * quarter of the payload leaves room for both encodings and the claims.
 */
export const MAX_ACL_SUBJECT_BYTES = 256 * 1024;

// What reading a persisted room's history needs (publish side): direct get
// on that room's stream, nothing else (its first and last sequence come
// from direct gets too, so no stream info).
function historySubjects(room: AclRoom): string[] {
  if (!room.policy.persist) return [];
  return [`$JS.API.DIRECT.GET.${roomStreamName(room.id)}`];
}

// What a room adds to the permission lists, in subject bytes.
function aclCost(room: AclRoom): number {
  let cost = 2 * wireSubject(room).length;
  for (const s of historySubjects(room)) cost += s.length;
  return cost;
}

/**
 * The rooms `signPubHex`'s ACL grants, and those it leaves out: rooms whose
 * subject breaks the grammar ({@linkcode expressibleRooms}), and, once the
 * subjects reach {@linkcode MAX_ACL_SUBJECT_BYTES}, the rest (`acl_full`).
 * The user's own rooms come first, then the others oldest first, so rooms
 * others add the user to later cannot push out those it already had.
 * Deterministic: the callout and the enforcer derive the same ACL.
 *
 * @example
 * ```ts
 * const { granted, leftOut } = aclRooms(pubHex, await store.listRoomsForMember(pubHex));
 * ```
 */
export function aclRooms<R extends AclRoom>(
  signPubHex: string,
  rooms: R[],
): { granted: R[]; leftOut: LeftOutRoom<R>[] } {
  const { granted: expressible, inexpressible } = expressibleRooms(rooms);
  const leftOut: LeftOutRoom<R>[] = [...inexpressible];
  const rank = (r: AclRoom) => (r.createdBy === signPubHex ? 0 : 1);
  const ordered = [...expressible].sort((a, b) =>
    rank(a) - rank(b) || (a.createdAt ?? 0) - (b.createdAt ?? 0) ||
    (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
  const granted: R[] = [];
  let used = 0;
  for (const room of ordered) {
    const cost = aclCost(room);
    if (used + cost > MAX_ACL_SUBJECT_BYTES) {
      leftOut.push({
        room,
        rule: "acl_full",
        message: `the user's permissions already list ${MAX_ACL_SUBJECT_BYTES} bytes of subjects`,
      });
      continue;
    }
    used += cost;
    granted.push(room);
  }
  return { granted, leftOut };
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
 * breaks the grammar, and rooms past the ACL's size bound, grant nothing
 * (see {@linkcode aclRooms}), so no room ever costs a user the others.
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
 * A persisted room is granted its wire subject (`$UNIBUS.ROOM.<id>`, see
 * {@linkcode wireSubject}) instead of its name, and adds exactly what
 * reading its history needs: direct get on that room's stream. No consumer
 * API at all: a consumer made while a member keeps delivering after the
 * member is removed.
 *
 * @example
 * ```ts
 * const perms = userPermissions(pubHex, [{ id: "r1", subject: "agent.scout.in", policy: { persist: false } }]);
 * perms.pub.allow; // ["_INBOX.*.>", "agent.scout.in"]
 * ```
 */
export function userPermissions(signPubHex: string, rooms: AclRoom[]): UserPermissions {
  return grantedPermissions(signPubHex, aclRooms(signPubHex, rooms).granted);
}

/**
 * The permissions for rooms {@linkcode aclRooms} already granted (the
 * callout, which also logs what it left out, sorts and bounds them once).
 *
 * @example
 * ```ts
 * const { granted } = aclRooms(pubHex, rooms);
 * const perms = grantedPermissions(pubHex, granted);
 * ```
 */
export function grantedPermissions(signPubHex: string, granted: AclRoom[]): UserPermissions {
  const inbox = inboxPrefixFor(signPubHex);
  const pub = new Set<string>([ANY_INBOX]);
  const sub = new Set<string>([`${inbox}.>`]);
  for (const room of granted) {
    pub.add(wireSubject(room));
    sub.add(wireSubject(room));
    for (const s of historySubjects(room)) pub.add(s);
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
