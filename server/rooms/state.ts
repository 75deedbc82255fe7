/**
 * A room as the control plane serves it, and the bridge between the signed
 * membership log (the truth, which clients verify themselves) and the
 * `members` table and room epoch (derived from it, because the auth callout
 * and the enforcer compute ACLs from them).
 *
 * @module
 */

import type { RoomView } from "../../lib/api/types.ts";
import { roomStreamName } from "../../lib/auth/acl.ts";
import {
  addedMembers,
  changeHash,
  MembershipError,
  parseChange,
  type RoomState,
  type SignedChange,
  verifyLog,
} from "../../lib/e2e/membership.ts";
import type { Room, RoomMemberSpec, RoomStateAfter, Store } from "../../lib/store/store.ts";
import { RoomRefusal } from "./refusal.ts";

export type { RoomView } from "../../lib/api/types.ts";

/**
 * The API view of a stored room.
 *
 * @example
 * ```ts
 * const view = await roomView(store, await store.getRoom(id));
 * ```
 */
export async function roomView(store: Store, room: Room): Promise<RoomView> {
  const [members, changes] = await Promise.all([
    store.listMembers(room.id),
    store.listRoomChanges(room.id),
  ]);
  return {
    id: room.id,
    subject: room.subject,
    policy: { ...room.policy },
    epoch: room.epoch,
    createdBy: room.createdBy,
    createdAt: room.createdAt,
    members: members.map((m) => ({ signPub: m.signPub, role: m.role })),
    changes: changes.map((c) => ({ text: c.text, sig: c.sig })),
    stream: room.policy.persist ? roomStreamName(room.id) : null,
  };
}

/**
 * Verifies a room's stored log. A log the server itself cannot verify means
 * the store was tampered with or written outside the API; that room cannot
 * be changed through the API until an operator repairs it (a refusal, not a 500:
 * nothing about the request is wrong, and retrying will not help).
 *
 * @example
 * ```ts
 * const { state, changes } = await verifiedRoom(store, id);
 * ```
 */
export async function verifiedRoom(
  store: Store,
  roomId: string,
): Promise<{ state: RoomState; changes: SignedChange[] }> {
  const changes = (await store.listRoomChanges(roomId)).map((c) => ({ text: c.text, sig: c.sig }));
  try {
    return { state: verifyLog(roomId, changes), changes };
  } catch (err) {
    if (!(err instanceof MembershipError)) throw err;
    throw new RoomRefusal(
      "log_unverifiable",
      `the room's stored membership log does not verify: ${err.message}`,
    );
  }
}

/** True when `signPub` was a member in any epoch of `state`. */
export function everMember(state: RoomState, signPub: string): boolean {
  for (const members of state.epochs.values()) if (members.has(signPub)) return true;
  return false;
}

/**
 * The member set and epoch a verified state stands for, as
 * {@linkcode Store.applyRoomChange} takes them. Each member carries the change
 * that (last) added it as its provenance.
 *
 * @example
 * ```ts
 * await store.applyRoomChange(id, seq, change, stateAfter(next, [...changes, change]));
 * ```
 */
export function stateAfter(state: RoomState, changes: SignedChange[]): RoomStateAfter {
  const addedBy = new Map<string, { by: string; change: string }>();
  for (const change of changes) {
    const body = parseChange(change.text);
    const added = addedMembers(body);
    // One provenance per change, shared by its members (for a change naming
    // many it is a hash of the change).
    const origin = { by: body.by, change: memberProvenance(change, body.seq, added.length) };
    for (const m of added) addedBy.set(m.member, origin);
  }
  const members: RoomMemberSpec[] = [];
  for (const [signPub, m] of state.members) {
    const origin = addedBy.get(signPub)!;
    members.push({ signPub, role: m.role, addedBy: origin.by, change: origin.change });
  }
  return { members, epoch: state.epoch };
}

/**
 * What a member row keeps as the change that added it: the change itself
 * (JSON `{text, sig}`) when it names one member, else `{seq, hash}` of it. A
 * change naming N members copied into each of their rows would store N² bytes
 * (128 members: 4.5 MB in the one KV record of a room's members, over NATS's
 * max payload); the change is in the room's log, and its hash pins which.
 *
 * @example
 * ```ts
 * memberProvenance(change, 0, 1); // JSON.stringify(change)
 * ```
 */
export function memberProvenance(change: SignedChange, seq: number, named: number): string {
  if (named <= 1) return JSON.stringify(change);
  return JSON.stringify({ seq, hash: changeHash(change) });
}
