/**
 * Why the room service refused a request, in its own terms: a code a client
 * can act on, a message for people, and the details that go with it. The
 * HTTP layer maps each code to a status (server/http/routes/common.ts); the
 * rules stay here, whoever calls them.
 *
 * @module
 */

/** Every reason the room service refuses for. */
export type RefusalCode =
  /** The request is malformed (400). */
  | "invalid_room_id"
  | "invalid_subject"
  | "invalid_change"
  | "kex_mismatch"
  | "unknown_user"
  | "unknown_member"
  | "empty_blob"
  /** The caller may not do this (403). */
  | "not_signer"
  | "not_admin"
  | "not_allowed"
  /** No such room for this caller, or none at all: the same answer (404). */
  | "not_found"
  /** The room's state forbids it now (409). */
  | "room_exists"
  | "subject_taken"
  | "conflict"
  | "last_admin"
  | "log_unverifiable"
  /** A quota of the caller's is used up (429). */
  | "quota_exceeded"
  /** The node has no JetStream storage left (507). */
  | "storage_full"
  /** A stream could not be made or removed now (503). */
  | "stream_unavailable"
  /** The cluster misses a node a new persisted room needs (503, retry later). */
  | "cluster_degraded";

/**
 * A refusal of the room service.
 *
 * @example
 * ```ts
 * throw new RoomRefusal("not_found", "room not found");
 * ```
 */
export class RoomRefusal extends Error {
  override name = "RoomRefusal";
  constructor(
    readonly code: RefusalCode,
    message: string,
    readonly details: Record<string, unknown> = {},
    /** Seconds after which a retry may succeed (cluster_degraded). */
    readonly retryAfterS?: number,
  ) {
    super(message);
  }
}

/**
 * The 404 a caller gets for a room it does not belong to, exactly as for one
 * that does not exist, so that probing cannot tell which rooms exist.
 *
 * @example
 * ```ts
 * throw roomNotFound();
 * ```
 */
export function roomNotFound(): RoomRefusal {
  return notFound("room");
}

/**
 * The 404 for `what` (a room, a blob): the same for one the caller may not
 * see as for one that does not exist.
 *
 * @example
 * ```ts
 * throw notFound("blob");
 * ```
 */
export function notFound(what: string): RoomRefusal {
  return new RoomRefusal("not_found", `${what} not found`);
}

/**
 * The 429 for a used-up quota: which limit, its maximum, and how much of it
 * the caller has used.
 *
 * @example
 * ```ts
 * throw quotaExceeded("rooms_per_user", 100, 100);
 * ```
 */
export function quotaExceeded(limit: string, max: number, used: number): RoomRefusal {
  return new RoomRefusal("quota_exceeded", `quota ${limit} reached: ${used} used of ${max}`, {
    limit,
    max,
    used,
  });
}

/**
 * A room or blob id as the server makes them: 32 lowercase hex digits. An id
 * of another shape names nothing and is answered as not found.
 */
export const ID32 = /^[0-9a-f]{32}$/;
