/**
 * The room service: creating a room from a signed genesis change, appending
 * signed membership changes, deleting, and reading rooms, with every rule the
 * server owns (the HTTP routes only parse requests and map refusals to
 * statuses).
 *
 * The server enforces the same rules as `lib/e2e/membership.ts` (clients
 * verify independently), plus what only it can check: that the signer is
 * the caller, that an added member is an active user whose registered
 * key-exchange key is the one named in the change, that subjects and ids are
 * free, the caller's quotas, and that a persisted room has its stream. Rooms
 * the caller does not belong to are refused as not found, exactly as rooms
 * that do not exist.
 *
 * @module
 */

import type { RoomSummary } from "../../lib/api/types.ts";
import { roomStreamName } from "../../lib/auth/acl.ts";
import {
  addedMembers,
  applyChange,
  type ChangeBody,
  LastAdminError,
  MembershipError,
  parseChange,
  type SignedChange,
  verifyLog,
} from "../../lib/e2e/membership.ts";
import { subjectViolation } from "../../lib/grammar.ts";
import type { Logger } from "../../lib/log.ts";
import {
  ConflictError,
  NotFoundError,
  type Room,
  RoomExistsError,
  type Store,
  StoreUnavailableError,
} from "../../lib/store/store.ts";
import type { MissingPeers } from "../cluster/status.ts";
import { KeyedLock } from "../keyed_lock.ts";
import type { Limits } from "../limits.ts";
import { ID32, quotaExceeded, roomNotFound, RoomRefusal } from "./refusal.ts";
import { memberProvenance, type RoomView, roomView, stateAfter, verifiedRoom } from "./state.ts";
import { type RoomStreams, StreamPlacementError, StreamStorageFullError } from "./streams.ts";

/** Seconds a client is told to wait before retrying a write the cluster cannot place. */
export const CLUSTER_DEGRADED_RETRY_AFTER_S = 30;

/** What the room service needs. */
export interface RoomServiceDeps {
  store: Store;
  /** Creates and deletes the JetStream streams of persisted rooms. */
  streams: RoomStreams;
  /**
   * Asks the session enforcer for an immediate pass after a membership
   * change (removed members are cut, added ones told to refresh); a no-op
   * when the bus runs without auth. Given the room changed, only its users
   * are re-checked.
   */
  recheck: (roomId?: string) => void;
  /** Tells the affected users that a room changed (server/rooms/notices.ts). */
  notify?: (roomId: string, users: string[]) => void;
  log: Logger;
  /** Serialises changes to one room in this process; shared with other room routes. */
  locks?: KeyedLock;
  /** How many rooms, and persisted rooms, one user may have created; unlimited when unset. */
  quotas?: Pick<Limits, "roomsPerUser" | "persistedRoomsPerUser">;
  /**
   * The cluster's nodes that are down right now (server/cluster/status.ts);
   * unset on a single node. A persisted room's stream needs all of them.
   */
  missingNodes?: () => Promise<MissingPeers>;
}

export type { RoomSummary } from "../../lib/api/types.ts";

/**
 * A `cluster_degraded` refusal naming the nodes that are down: a new
 * persisted room's stream has a replica on every node of the cluster, and
 * nats-server 2.10 places one only on live peers. Nothing of the room is
 * kept; the rest of the API keeps working.
 *
 * @example
 * ```ts
 * throw clusterDegraded({ names: ["n3"], unnamed: 0 });
 * ```
 */
export function clusterDegraded(missing: MissingPeers | null, cause?: string): RoomRefusal {
  const names = missing?.names ?? [];
  const unnamed = missing?.unnamed ?? 0;
  const who = [
    ...names.map((n) => `node ${n}`),
    ...(unnamed > 0 ? [`${unnamed} node(s) never seen by this one`] : []),
  ];
  const down = who.length > 0 ? `${who.join(" and ")} ${who.length > 1 ? "are" : "is"} down` : (
    `a node is unavailable${cause ? ` (${cause})` : ""}`
  );
  return new RoomRefusal(
    "cluster_degraded",
    `a persisted room's stream needs every node of the cluster, and ${down}; ` +
      `retry when it is back (everything else works meanwhile)`,
    { missing: names },
    CLUSTER_DEGRADED_RETRY_AFTER_S,
  );
}

/**
 * A room the caller is a current member of, else not found (also for ids
 * that cannot exist, so a probe learns nothing).
 *
 * @example
 * ```ts
 * const room = await memberRoom(store, id, caller);
 * ```
 */
export async function memberRoom(store: Store, id: string, caller: string): Promise<Room> {
  if (!ID32.test(id)) throw roomNotFound();
  const room = await store.getRoom(id);
  if (!room || !(await store.getMember(id, caller))) throw roomNotFound();
  return room;
}

/**
 * The subject if `lib/grammar.ts` accepts it, else `invalid_subject` with
 * the broken `rule`. Checked before anything is stored: the store once kept
 * a NUL-suffixed subject cut at the NUL, i.e. another room's.
 *
 * @example
 * ```ts
 * const subject = requireSubject("agent.scout.in");
 * ```
 */
export function requireSubject(subject: unknown): string {
  const bad = subjectViolation(subject);
  if (bad) throw new RoomRefusal("invalid_subject", bad.message, { rule: bad.rule });
  return subject as string;
}

function invalidChange(message: string): RoomRefusal {
  return new RoomRefusal("invalid_change", message);
}

function notSigner(): RoomRefusal {
  return new RoomRefusal("not_signer", "the change is not signed by you");
}

function kexMismatch(signPub: string): RoomRefusal {
  return new RoomRefusal(
    "kex_mismatch",
    `the change names a key-exchange key for ${signPub} that is not the registered one`,
  );
}

function parsed(change: SignedChange): ChangeBody {
  try {
    return parseChange(change.text);
  } catch (err) {
    if (err instanceof MembershipError) throw invalidChange(err.message);
    throw err;
  }
}

/** The view of a room built from what was just written (see `committedView`). */
function writtenView(
  room: Room,
  epoch: number,
  members: Array<{ signPub: string; role: "admin" | "member" }>,
  changes: SignedChange[],
): RoomView {
  return {
    id: room.id,
    subject: room.subject,
    policy: { ...room.policy },
    epoch,
    createdBy: room.createdBy,
    createdAt: room.createdAt,
    members: members.map((m) => ({ signPub: m.signPub, role: m.role })),
    changes: changes.map((c) => ({ text: c.text, sig: c.sig })),
    stream: room.policy.persist ? roomStreamName(room.id) : null,
  };
}

/**
 * The room service over `deps`.
 *
 * @example
 * ```ts
 * const rooms = new RoomService({ store, streams, recheck, log });
 * const view = await rooms.create(caller, change);
 * ```
 */
export class RoomService {
  readonly #store: Store;
  readonly #streams: RoomStreams;
  readonly #recheck: (roomId?: string) => void;
  readonly #notify: (roomId: string, users: string[]) => void;
  readonly #log: Logger;
  readonly #locks: KeyedLock;
  readonly #quotas: Pick<Limits, "roomsPerUser" | "persistedRoomsPerUser">;
  readonly #missingNodes?: () => Promise<MissingPeers>;

  constructor(deps: RoomServiceDeps) {
    this.#store = deps.store;
    this.#streams = deps.streams;
    this.#recheck = deps.recheck;
    this.#notify = deps.notify ?? (() => {});
    this.#log = deps.log;
    this.#locks = deps.locks ?? new KeyedLock();
    this.#quotas = deps.quotas ?? { roomsPerUser: Infinity, persistedRoomsPerUser: Infinity };
    this.#missingNodes = deps.missingNodes;
  }

  /**
   * The answer to a write that has committed: the room as the store now has
   * it, or, if that read fails (a stream leader being elected), as it was
   * written. Never an error: the client would take its committed room or
   * change for a failure and retry into a conflict with it.
   */
  async #committedView(room: Room, written: () => RoomView): Promise<RoomView> {
    try {
      const now = await this.#store.getRoom(room.id);
      return await roomView(this.#store, now ?? room);
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      this.#log.warn("committed; answering with the written view", { room: room.id, error: err });
      return written();
    }
  }

  // Counted from the store, so rooms made through another node or before a
  // restart count too. Under the creator's lock, two creates of one user in
  // this process cannot both pass on the last free place (across nodes they
  // can, by at most one per node: a bounded overshoot, not a hole).
  async #requireRoomQuota(caller: string, persist: boolean): Promise<void> {
    const used = await this.#store.countRoomsCreatedBy(caller);
    if (used.rooms >= this.#quotas.roomsPerUser) {
      throw quotaExceeded("rooms_per_user", this.#quotas.roomsPerUser, used.rooms);
    }
    if (persist && used.persisted >= this.#quotas.persistedRoomsPerUser) {
      throw quotaExceeded(
        "persisted_rooms_per_user",
        this.#quotas.persistedRoomsPerUser,
        used.persisted,
      );
    }
  }

  /** The member's registered kex must be the one the change names; registers it if none. */
  async #requireKex(
    signPub: string,
    b: { kex?: string; kexSig?: string },
    unknown: "unknown_user" | "unknown_member",
  ): Promise<void> {
    const user = await this.#store.getUser(signPub);
    if (!user || user.status !== "active") {
      throw new RoomRefusal(unknown, `${signPub} is not an active user`);
    }
    if (user.kexPub === null) {
      // The change carries the binding signed by the member's own key, which
      // verifyLog/applyChange already checked: registering it is what the
      // member would do with PUT /v1/me/kex. The store sets it only while
      // unset, so a concurrent registration elsewhere makes this a mismatch.
      try {
        await this.#store.setUserKex(signPub, b.kex!, b.kexSig!);
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
        throw kexMismatch(signPub);
      }
    } else if (user.kexPub !== b.kex) {
      throw kexMismatch(signPub);
    }
  }

  async #missing(): Promise<MissingPeers | null> {
    return await this.#missingNodes?.().catch(() => null) ?? null;
  }

  // A room without its stream would be unusable: undo it, so that nothing is
  // kept and the creator can simply retry.
  async #rollBack(room: Room, step: string, err: unknown): Promise<void> {
    this.#log.error("room creation failed, rolled back", { room: room.id, step, error: err });
    // The stream too: a creation that timed out may still have made it.
    await this.#streams.delete(room.id).catch(() => {});
    await this.#store.deleteRoom(room.id).catch((e) => {
      // Left for the creator's retry of the same genesis, which completes it.
      this.#log.error("room creation not rolled back", { room: room.id, error: e });
    });
  }

  async #ensureStream(room: Room): Promise<void> {
    try {
      await this.#streams.create({ id: room.id, subject: room.subject });
    } catch (err) {
      await this.#rollBack(room, "stream", err);
      // The node's JetStream store is fully reserved: a capacity problem for
      // the operator (--jetstream-max-store), not an outage.
      if (err instanceof StreamStorageFullError) {
        throw new RoomRefusal(
          "storage_full",
          "the node has no JetStream storage left for another persisted room",
        );
      }
      if (err instanceof StreamPlacementError) {
        throw clusterDegraded(await this.#missing(), err.message);
      }
      throw new RoomRefusal("stream_unavailable", "could not create the room's stream");
    }
  }

  /** A genesis change's checks before anything is read or written: its body. */
  #genesis(caller: string, change: SignedChange): ChangeBody {
    // Checked on the raw line before parsing, so the answer is the specific
    // code whether or not the parser also insists on the id's shape.
    const roomLine = /^room: (.*)$/m.exec(change.text);
    if (roomLine && !ID32.test(roomLine[1])) {
      throw new RoomRefusal("invalid_room_id", "the room id must be 32 lowercase hex characters");
    }
    // Split on "\n" only, exactly as the parser does, so the value checked is
    // the whole line (a regex `.` would stop at "\r" or U+2028).
    const subjectLine = change.text.split("\n").find((l) => l.startsWith("subject: "));
    if (subjectLine !== undefined) requireSubject(subjectLine.slice("subject: ".length));
    const b = parsed(change);
    if (b.op !== "create") throw invalidChange("a room is created by a `create` change");
    try {
      verifyLog(b.room, [change]);
    } catch (err) {
      if (err instanceof MembershipError) throw invalidChange(err.message);
      throw err;
    }
    if (b.by !== caller) throw notSigner();
    return b;
  }

  async #taken(b: ChangeBody): Promise<RoomRefusal | null> {
    if (await this.#store.getRoom(b.room)) {
      return new RoomRefusal("room_exists", "a room with this id exists");
    }
    // parseChange accepted the subject by the same grammar (lib/grammar.ts).
    if (await this.#store.getRoomBySubject(b.subject!)) {
      return new RoomRefusal("subject_taken", "another room uses this subject");
    }
    return null;
  }

  // This very genesis, by its signer, already stored: a retry of a creation
  // whose answer was lost or whose outcome was unknown. It completes the
  // creation (a persisted room's stream may be missing) instead of refusing
  // the creator's own room as taken.
  async #retried(caller: string, b: ChangeBody, change: SignedChange): Promise<Room | null> {
    const room = await this.#store.getRoom(b.room);
    if (room === null || room.createdBy !== caller) return null;
    const [first] = await this.#store.listRoomChanges(b.room);
    const same = first?.seq === 0 && first.text === change.text && first.sig === change.sig;
    return same ? room : null;
  }

  /**
   * Creates a room from its signed genesis change (a retry of a stored one
   * completes it); `created` is false for such a retry.
   */
  async create(caller: string, change: SignedChange): Promise<RoomView> {
    const b = this.#genesis(caller, change);
    const store = this.#store;
    return await this.#locks.run(`quota:${caller}`, () =>
      this.#locks.run(b.room, async () => {
        const again = await this.#retried(caller, b, change);
        if (again) {
          if (again.policy.persist) await this.#ensureStream(again);
          this.#log.info("room creation retried: already stored", { room: again.id, by: caller });
          this.#recheck(again.id);
          return await roomView(store, again);
        }
        const conflict = await this.#taken(b);
        if (conflict) throw conflict;
        await this.#requireRoomQuota(caller, b.policy!.persist);
        if (b.policy!.persist && this.#missingNodes) {
          // Refused before anything is written: its stream could not be
          // placed, and a room without one would be rolled back anyway.
          const down = await this.#missing();
          if (down && (down.names.length > 0 || down.unnamed > 0)) throw clusterDegraded(down);
        }
        await this.#requireKex(caller, b, "unknown_user");
        // A room created with members (one v2 change): each must be an
        // active user whose registered kex is the one the change names,
        // exactly as for an add, or the room would seal keys to a stranger.
        const joining = addedMembers(b).slice(1);
        for (const m of joining) await this.#requireKex(m.member, m, "unknown_member");
        const provenance = memberProvenance(change, 0, joining.length + 1);
        const members = [
          { signPub: caller, role: "admin" as const, addedBy: caller, change: provenance },
          ...joining.map((m) => ({
            signPub: m.member,
            role: m.role,
            addedBy: caller,
            change: provenance,
          })),
        ];
        let room: Room;
        try {
          // The room, its genesis change and its creator as admin are one
          // store write: no node ever sees the room without them.
          room = await store.createRoom({
            id: b.room,
            subject: b.subject!,
            policy: b.policy!,
            createdBy: caller,
          }, { change, members });
        } catch (err) {
          // Another request (or node) took the id or subject since we looked.
          if (err instanceof RoomExistsError) throw (await this.#taken(b)) ?? err;
          throw err;
        }
        if (room.policy.persist) await this.#ensureStream(room);
        this.#log.audit("room.create", "room created", {
          room: room.id,
          subject: room.subject,
          by: caller,
          members: joining.length + 1,
        });
        this.#recheck(room.id);
        const created = room;
        return await this.#committedView(
          created,
          () => writtenView(created, 0, members, [change]),
        );
      }));
  }

  /** Appends a signed membership change to room `id`. */
  async change(caller: string, id: string, change: SignedChange): Promise<RoomView> {
    const b = parsed(change);
    const store = this.#store;
    return await this.#locks.run(id, async () => {
      const room = await memberRoom(store, id, caller);
      const { state, changes } = await verifiedRoom(store, id);
      if (b.room !== id) throw invalidChange("the change is for another room");
      if (b.by !== caller) throw notSigner();
      if (b.seq <= state.seq) {
        throw new RoomRefusal(
          "conflict",
          `the room changed first (it is at seq ${state.seq}); refetch it and retry`,
        );
      }
      let next;
      try {
        next = applyChange(state, change);
      } catch (err) {
        // Well-formed, but the room's state forbids it: the last admin must
        // add another admin or delete the room first (protocol.md §2.4).
        if (err instanceof LastAdminError) {
          throw new RoomRefusal(
            "last_admin",
            `${err.message}; add another admin or delete the room`,
          );
        }
        if (err instanceof MembershipError) throw invalidChange(err.message);
        throw err;
      }
      const added = addedMembers(b);
      for (const m of added) await this.#requireKex(m.member, m, "unknown_member");
      try {
        // The change and the member set after it in one store write, which
        // is the compare-and-set across nodes: the local lock only spares
        // this process some conflicts.
        await store.applyRoomChange(id, b.seq, change, stateAfter(next, [...changes, change]));
      } catch (err) {
        if (err instanceof ConflictError) {
          throw new RoomRefusal("conflict", "the room changed first; refetch it and retry");
        }
        if (err instanceof NotFoundError) throw roomNotFound();
        throw err;
      }
      const named = b.member !== undefined ? [b.member] : added.map((m) => m.member);
      this.#log.audit(
        `room.${b.op === "remove" && b.member === caller ? "leave" : b.op}`,
        "room changed",
        {
          room: id,
          seq: b.seq,
          op: b.op,
          member: named.length === 1 ? named[0] : undefined,
          members: named.length,
          by: caller,
        },
      );
      this.#recheck(id);
      this.#notify(id, [...new Set([...next.members.keys(), ...named])]);
      const members = [...next.members.values()].map((m) => ({
        signPub: m.signPub,
        role: m.role,
      }));
      return await this.#committedView(
        room,
        () => writtenView(room, next.epoch, members, [...changes, change]),
      );
    });
  }

  /** Deletes room `id` (an admin, or its creator even after leaving). */
  async delete(caller: string, id: string): Promise<void> {
    const store = this.#store;
    await this.#locks.run(id, async () => {
      // A room counts against its creator's quota until it is deleted,
      // whoever its members are by then: counting only rooms the creator is
      // still in would let anyone shed the quota by adding another admin (no
      // consent is needed) and leaving, and make rooms (each persisted one
      // reserving JetStream storage) without bound. So the creator keeps the
      // one right that frees the slot: it may delete the room even after
      // leaving or being removed. Anyone else who is not a member gets the
      // same not-found as for a room that does not exist.
      if (!ID32.test(id)) throw roomNotFound();
      const room = await store.getRoom(id);
      const creator = room?.createdBy === caller;
      if (!room || (!creator && !(await store.getMember(id, caller)))) throw roomNotFound();
      const { state } = await verifiedRoom(store, id);
      if (!creator && state.members.get(caller)?.role !== "admin") {
        throw new RoomRefusal(
          "not_admin",
          "only an admin or the creator of the room may delete it",
        );
      }
      // Stream first: if JetStream cannot delete it the room stays whole and
      // the admin can retry, instead of leaving history nobody can manage.
      if (room.policy.persist) {
        try {
          await this.#streams.delete(id);
        } catch (err) {
          this.#log.error("could not delete a room stream", { room: id, error: err });
          throw new RoomRefusal("stream_unavailable", "could not delete the room's stream");
        }
      }
      await store.deleteRoom(id);
      this.#log.audit("room.delete", "room deleted", { room: id, by: caller });
      this.#recheck(id);
      // Members' connections are cut (their ACL narrowed) and reconnect; the
      // notice lets their clients drop the room's subscriptions first.
      this.#notify(id, [...state.members.keys()]);
    });
  }

  /**
   * The caller's rooms: summaries are one store read in all; full views two
   * per room (members and log), which a client refreshing its session with
   * hundreds of rooms paid on every createRoom.
   */
  async list(caller: string, summary: boolean): Promise<RoomSummary[] | RoomView[]> {
    const rooms = await this.#store.listRoomsForMember(caller);
    if (summary) {
      return rooms.map((r) => ({
        id: r.id,
        subject: r.subject,
        policy: { ...r.policy },
        epoch: r.epoch,
      }));
    }
    return await Promise.all(rooms.map((r) => roomView(this.#store, r)));
  }

  /** Room `id`, if the caller is a member. */
  async get(caller: string, id: string): Promise<RoomView> {
    return await roomView(this.#store, await memberRoom(this.#store, id, caller));
  }

  /** The room on `subject`, if the caller is a member. */
  async bySubject(caller: string, subject: unknown): Promise<RoomView> {
    const room = await this.#store.getRoomBySubject(requireSubject(subject));
    if (!room || !(await this.#store.getMember(room.id, caller))) throw roomNotFound();
    return await roomView(this.#store, room);
  }
}
