/**
 * Room routes: create a room from a signed genesis change, read rooms,
 * append signed membership changes, delete a room.
 *
 * The server enforces the same rules as `lib/e2e/membership.ts` (clients
 * verify independently), plus what only it can check: that the signer is
 * the caller, that an added member is an active user whose registered
 * key-exchange key is the one named in the change, and that subjects and
 * ids are free. Rooms the caller does not belong to answer 404, exactly as
 * rooms that do not exist.
 *
 * @module
 */

import {
  addedMembers,
  applyChange,
  type ChangeBody,
  LastAdminError,
  MembershipError,
  parseChange,
  type SignedChange,
  verifyLog,
} from "../../../lib/e2e/membership.ts";
import { roomStreamName } from "../../../lib/auth/acl.ts";
import { subjectViolation } from "../../../lib/grammar.ts";
import type { Logger } from "../../../lib/log.ts";
import {
  ConflictError,
  NotFoundError,
  type Room,
  RoomExistsError,
  type Store,
  StoreUnavailableError,
} from "../../../lib/store/store.ts";
import type { Limits } from "../../limits.ts";
import type { MissingPeers } from "../../cluster/status.ts";
import {
  type RoomStreams,
  StreamPlacementError,
  StreamStorageFullError,
} from "../../rooms/streams.ts";
import {
  memberProvenance,
  type RoomView,
  roomView,
  stateAfter,
  verifiedRoom,
} from "../../rooms/state.ts";
import { HttpError, json, readJson, type Route } from "../app.ts";
import {
  asObject,
  badRequest,
  callerOf,
  ID32,
  KeyedLock,
  notFound,
  quotaExceeded,
  storeErrors,
  stringField,
} from "./common.ts";

/** What the room routes need. */
export interface RoomRouteDeps {
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

/** Seconds a client is told to wait before retrying a write the cluster cannot place. */
export const CLUSTER_DEGRADED_RETRY_AFTER_S = 30;

/**
 * A 503 `cluster_degraded` with `Retry-After`, naming the nodes that are
 * down: a new persisted room's stream has a replica on every node of the
 * cluster, and nats-server 2.10 places one only on live peers. Nothing of
 * the room is kept; the rest of the API keeps working.
 *
 * @example
 * ```ts
 * throw clusterDegraded({ names: ["n3"], unnamed: 0 });
 * ```
 */
export function clusterDegraded(missing: MissingPeers | null, cause?: string): HttpError {
  const names = missing?.names ?? [];
  const unnamed = missing?.unnamed ?? 0;
  const who = [
    ...names.map((n) => `node ${n}`),
    ...(unnamed > 0 ? [`${unnamed} node(s) never seen by this one`] : []),
  ];
  const down = who.length > 0 ? `${who.join(" and ")} ${who.length > 1 ? "are" : "is"} down` : (
    `a node is unavailable${cause ? ` (${cause})` : ""}`
  );
  return new HttpError(
    503,
    "cluster_degraded",
    `a persisted room's stream needs every node of the cluster, and ${down}; ` +
      `retry when it is back (everything else works meanwhile)`,
    { missing: names },
    { "retry-after": String(CLUSTER_DEGRADED_RETRY_AFTER_S) },
  );
}

/**
 * The answer to a write that has committed: the room as the store now has
 * it, or, if that read fails (a stream leader being elected), as it was
 * written. Never an error: the client would take its committed room or
 * change for a failure and retry into a conflict with it.
 */
async function committedView(
  store: Store,
  log: Logger,
  room: Room,
  written: () => RoomView,
): Promise<RoomView> {
  try {
    const now = await store.getRoom(room.id);
    return await roomView(store, now ?? room);
  } catch (err) {
    if (!(err instanceof StoreUnavailableError)) throw err;
    log.warn("committed; answering with the written view", { room: room.id, error: err });
    return written();
  }
}

/** The view of a room built from what was just written (see committedView). */
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
 * A room the caller is a current member of, else 404 (also for ids that
 * cannot exist, so a probe learns nothing).
 *
 * @example
 * ```ts
 * const room = await memberRoom(store, ctx.params.id, caller);
 * ```
 */
export async function memberRoom(store: Store, id: string, caller: string): Promise<Room> {
  if (!ID32.test(id)) throw notFound("room");
  const room = await store.getRoom(id);
  if (!room || !(await store.getMember(id, caller))) throw notFound("room");
  return room;
}

/**
 * Reads `{change: {text, sig}}` from a request body, else 400.
 *
 * @example
 * ```ts
 * const change = changeFromBody(await readJson(req, ctx));
 * ```
 */
export function changeFromBody(body: unknown): SignedChange {
  const change = asObject(asObject(body, "the request body").change, "change");
  return { text: stringField(change, "text"), sig: stringField(change, "sig") };
}

function kexMismatch(signPub: string): HttpError {
  return badRequest(
    `the change names a key-exchange key for ${signPub} that is not the registered one`,
    "kex_mismatch",
  );
}

/**
 * The subject if `lib/grammar.ts` accepts it, else 400 `invalid_subject`
 * with the broken `rule`. Checked before anything is stored: the store
 * once kept a NUL-suffixed subject cut at the NUL, i.e. another room's.
 *
 * @example
 * ```ts
 * const subject = requireSubject(ctx.params.subject);
 * ```
 */
export function requireSubject(subject: unknown): string {
  const bad = subjectViolation(subject);
  if (bad) throw new HttpError(400, "invalid_subject", bad.message, { rule: bad.rule });
  return subject as string;
}

function invalidChange(message: string): HttpError {
  return new HttpError(400, "invalid_change", message);
}

function parsed(change: SignedChange): ChangeBody {
  try {
    return parseChange(change.text);
  } catch (err) {
    if (err instanceof MembershipError) throw invalidChange(err.message);
    throw err;
  }
}

/**
 * `POST /v1/rooms`, `GET /v1/rooms`, `GET /v1/rooms/:id`,
 * `GET /v1/rooms/by-subject/:subject`, `POST /v1/rooms/:id/changes`,
 * `DELETE /v1/rooms/:id`.
 *
 * @example
 * ```ts
 * const routes = roomRoutes({ store, streams: natsRoomStreams(nc), recheck, log });
 * ```
 */
export function roomRoutes(deps: RoomRouteDeps): Route[] {
  const { store, streams, recheck, log } = deps;
  const notify = deps.notify ?? (() => {});
  const locks = deps.locks ?? new KeyedLock();
  const quotas = deps.quotas ?? { roomsPerUser: Infinity, persistedRoomsPerUser: Infinity };

  // Counted from the store, so rooms made through another node or before a
  // restart count too. Under the creator's lock, two creates of one user in
  // this process cannot both pass on the last free place (across nodes they
  // can, by at most one per node: a bounded overshoot, not a hole).
  const requireRoomQuota = async (caller: string, persist: boolean) => {
    const used = await store.countRoomsCreatedBy(caller);
    if (used.rooms >= quotas.roomsPerUser) {
      throw quotaExceeded("rooms_per_user", quotas.roomsPerUser, used.rooms);
    }
    if (persist && used.persisted >= quotas.persistedRoomsPerUser) {
      throw quotaExceeded("persisted_rooms_per_user", quotas.persistedRoomsPerUser, used.persisted);
    }
  };

  /** The caller's registered kex must be the one the change names; registers it if none. */
  const requireKex = async (
    signPub: string,
    b: { kex?: string; kexSig?: string },
    unknown: string,
  ) => {
    const user = await store.getUser(signPub);
    if (!user || user.status !== "active") {
      throw badRequest(`${signPub} is not an active user`, unknown);
    }
    if (user.kexPub === null) {
      // The change carries the binding signed by the member's own key, which
      // verifyLog/applyChange already checked: registering it is what the
      // member would do with PUT /v1/me/kex. The store sets it only while
      // unset, so a concurrent registration elsewhere makes this a mismatch.
      try {
        await store.setUserKex(signPub, b.kex!, b.kexSig!);
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
        throw kexMismatch(signPub);
      }
    } else if (user.kexPub !== b.kex) {
      throw kexMismatch(signPub);
    }
  };

  const createRoom = storeErrors(async (req, ctx) => {
    const caller = callerOf(ctx);
    const change = changeFromBody(await readJson(req, ctx));
    // Checked on the raw line before parsing, so the answer is the specific
    // code whether or not the parser also insists on the id's shape.
    const roomLine = /^room: (.*)$/m.exec(change.text);
    if (roomLine && !ID32.test(roomLine[1])) {
      throw badRequest("the room id must be 32 lowercase hex characters", "invalid_room_id");
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
    if (b.by !== caller) throw new HttpError(403, "not_signer", "the change is not signed by you");
    // parseChange accepted it by the same grammar (lib/grammar.ts), and the
    // raw line above already answered a bad one with invalid_subject.
    const subject = b.subject!;
    const taken = async () => {
      if (await store.getRoom(b.room)) {
        return new HttpError(409, "room_exists", "a room with this id exists");
      }
      if (await store.getRoomBySubject(subject)) {
        return new HttpError(409, "subject_taken", "another room uses this subject");
      }
      return null;
    };
    // This very genesis, by its signer, already stored: a retry of a
    // creation whose answer was lost or whose outcome was unknown. It
    // completes the creation (a persisted room's stream may be missing)
    // instead of refusing the creator's own room as taken.
    const retried = async (): Promise<Room | null> => {
      const room = await store.getRoom(b.room);
      if (room === null || room.createdBy !== caller) return null;
      const [first] = await store.listRoomChanges(b.room);
      const same = first?.seq === 0 && first.text === change.text && first.sig === change.sig;
      return same ? room : null;
    };
    const missing = async () => await deps.missingNodes?.().catch(() => null) ?? null;
    // A room without its stream would be unusable: undo it, so that nothing
    // is kept and the creator can simply retry.
    const rollBack = async (room: Room, step: string, err: unknown) => {
      log.error("room creation failed, rolled back", { room: room.id, step, error: err });
      // The stream too: a creation that timed out may still have made it.
      await streams.delete(room.id).catch(() => {});
      await store.deleteRoom(room.id).catch((e) => {
        // Left for the creator's retry of the same genesis, which completes it.
        log.error("room creation not rolled back", { room: room.id, error: e });
      });
    };
    const ensureStream = async (room: Room) => {
      try {
        await streams.create({ id: room.id, subject: room.subject });
      } catch (err) {
        await rollBack(room, "stream", err);
        // The node's JetStream store is fully reserved: a capacity
        // problem for the operator (--jetstream-max-store), not an outage.
        if (err instanceof StreamStorageFullError) {
          throw new HttpError(
            507,
            "storage_full",
            "the node has no JetStream storage left for another persisted room",
          );
        }
        if (err instanceof StreamPlacementError) {
          throw clusterDegraded(await missing(), err.message);
        }
        throw new HttpError(503, "stream_unavailable", "could not create the room's stream");
      }
    };
    return await locks.run(`quota:${caller}`, () =>
      locks.run(b.room, async () => {
        const again = await retried();
        if (again) {
          if (again.policy.persist) await ensureStream(again);
          log.info("room creation retried: already stored", { room: again.id, by: caller });
          recheck(again.id);
          return json(201, await roomView(store, again));
        }
        const conflict = await taken();
        if (conflict) throw conflict;
        await requireRoomQuota(caller, b.policy!.persist);
        if (b.policy!.persist && deps.missingNodes) {
          // Refused before anything is written: its stream could not be
          // placed, and a room without one would be rolled back anyway.
          const down = await missing();
          if (down && (down.names.length > 0 || down.unnamed > 0)) throw clusterDegraded(down);
        }
        await requireKex(caller, b, "unknown_user");
        // A room created with members (one v2 change): each must be an
        // active user whose registered kex is the one the change names,
        // exactly as for an add, or the room would seal keys to a stranger.
        const joining = addedMembers(b).slice(1);
        for (const m of joining) await requireKex(m.member, m, "unknown_member");
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
            subject,
            policy: b.policy!,
            createdBy: caller,
          }, { change, members });
        } catch (err) {
          // Another request (or node) took the id or subject since we looked.
          if (err instanceof RoomExistsError) throw (await taken()) ?? err;
          throw err;
        }
        if (room.policy.persist) await ensureStream(room);
        log.info("room created", {
          room: room.id,
          subject: room.subject,
          by: caller,
          members: joining.length + 1,
        });
        recheck(room.id);
        const created = room;
        return json(
          201,
          await committedView(
            store,
            log,
            created,
            () => writtenView(created, 0, members, [change]),
          ),
        );
      }));
  });

  const changeRoom = storeErrors(async (req, ctx) => {
    const caller = callerOf(ctx);
    const id = ctx.params.id;
    const change = changeFromBody(await readJson(req, ctx));
    const b = parsed(change);
    return await locks.run(id, async () => {
      const room = await memberRoom(store, id, caller);
      const { state, changes } = await verifiedRoom(store, id);
      if (b.room !== id) throw invalidChange("the change is for another room");
      if (b.by !== caller) {
        throw new HttpError(403, "not_signer", "the change is not signed by you");
      }
      if (b.seq <= state.seq) {
        throw new HttpError(
          409,
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
          throw new HttpError(
            409,
            "last_admin",
            `${err.message}; add another admin or delete the room`,
          );
        }
        if (err instanceof MembershipError) throw invalidChange(err.message);
        throw err;
      }
      const added = addedMembers(b);
      for (const m of added) await requireKex(m.member, m, "unknown_member");
      try {
        // The change and the member set after it in one store write, which
        // is the compare-and-set across nodes: the local lock only spares
        // this process some conflicts.
        await store.applyRoomChange(id, b.seq, change, stateAfter(next, [...changes, change]));
      } catch (err) {
        if (err instanceof ConflictError) {
          throw new HttpError(409, "conflict", "the room changed first; refetch it and retry");
        }
        if (err instanceof NotFoundError) throw notFound("room");
        throw err;
      }
      const named = b.member !== undefined ? [b.member] : added.map((m) => m.member);
      log.info("room changed", {
        room: id,
        seq: b.seq,
        op: b.op,
        member: named.length === 1 ? named[0] : undefined,
        members: named.length,
        by: caller,
      });
      recheck(id);
      notify(id, [...new Set([...next.members.keys(), ...named])]);
      const members = [...next.members.values()].map((m) => ({
        signPub: m.signPub,
        role: m.role,
      }));
      return json(
        200,
        await committedView(
          store,
          log,
          room,
          () => writtenView(room, next.epoch, members, [...changes, change]),
        ),
      );
    });
  });

  const deleteRoom = storeErrors(async (_req, ctx) => {
    const caller = callerOf(ctx);
    const id = ctx.params.id;
    return await locks.run(id, async () => {
      // A room counts against its creator's quota until it is deleted,
      // whoever its members are by then: counting only rooms the creator is
      // still in would let anyone shed the quota by adding another admin
      // (no consent is needed) and leaving, and make rooms (each persisted
      // one reserving JetStream storage) without bound. So the creator keeps
      // the one right that frees the slot: it may delete the room even after
      // leaving or being removed. Anyone else who is not a member gets the
      // same 404 as for a room that does not exist.
      if (!ID32.test(id)) throw notFound("room");
      const room = await store.getRoom(id);
      const creator = room?.createdBy === caller;
      if (!room || (!creator && !(await store.getMember(id, caller)))) throw notFound("room");
      const { state } = await verifiedRoom(store, id);
      if (!creator && state.members.get(caller)?.role !== "admin") {
        throw new HttpError(
          403,
          "not_admin",
          "only an admin or the creator of the room may delete it",
        );
      }
      // Stream first: if JetStream cannot delete it the room stays whole and
      // the admin can retry, instead of leaving history nobody can manage.
      if (room.policy.persist) {
        try {
          await streams.delete(id);
        } catch (err) {
          log.error("could not delete a room stream", { room: id, error: err });
          throw new HttpError(503, "stream_unavailable", "could not delete the room's stream");
        }
      }
      await store.deleteRoom(id);
      log.info("room deleted", { room: id, by: caller });
      recheck(id);
      // Members' connections are cut (their ACL narrowed) and reconnect; the
      // notice lets their clients drop the room's subscriptions first.
      notify(id, [...state.members.keys()]);
      return new Response(null, { status: 204 });
    });
  });

  return [
    { method: "POST", path: "/v1/rooms", handler: createRoom },
    {
      method: "GET",
      path: "/v1/rooms",
      handler: storeErrors(async (_req, ctx) => {
        const caller = callerOf(ctx);
        const view = ctx.url.searchParams.get("view");
        if (view !== null && view !== "summary") {
          throw badRequest("view must be `summary` or absent", "invalid_view");
        }
        const rooms = await store.listRoomsForMember(caller);
        // Summaries are one store read in all; full views two per room
        // (members and log), which a client refreshing its session with
        // hundreds of rooms paid on every createRoom.
        if (view === "summary") {
          return json(200, {
            rooms: rooms.map((r) => ({
              id: r.id,
              subject: r.subject,
              policy: { ...r.policy },
              epoch: r.epoch,
            })),
          });
        }
        return json(200, { rooms: await Promise.all(rooms.map((r) => roomView(store, r))) });
      }),
    },
    {
      method: "GET",
      path: "/v1/rooms/by-subject/:subject",
      handler: storeErrors(async (_req, ctx) => {
        const caller = callerOf(ctx);
        const subject = requireSubject(ctx.params.subject);
        const room = await store.getRoomBySubject(subject);
        if (!room || !(await store.getMember(room.id, caller))) throw notFound("room");
        return json(200, await roomView(store, room));
      }),
    },
    {
      method: "GET",
      path: "/v1/rooms/:id",
      handler: storeErrors(async (_req, ctx) => {
        const room = await memberRoom(store, ctx.params.id, callerOf(ctx));
        return json(200, await roomView(store, room));
      }),
    },
    { method: "POST", path: "/v1/rooms/:id/changes", handler: changeRoom },
    { method: "DELETE", path: "/v1/rooms/:id", handler: deleteRoom },
  ];
}
