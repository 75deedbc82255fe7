/**
 * Helpers shared by the control-plane route modules: the authenticated
 * caller, strict field readers for JSON bodies, the mapping of store errors
 * to HTTP answers, and a per-key lock.
 *
 * Every reader throws {@linkcode HttpError} 400 with a message naming the
 * field, so that bad input is always a 4xx and never reaches the store as a
 * surprise (a 500).
 *
 * @module
 */

import {
  InvalidInputError,
  NotFoundError,
  RecordTooNewError,
  StoreError,
  StoreOutcomeUnknownError,
  StoreUnavailableError,
} from "../../../lib/store/store.ts";
import { type RefusalCode, RoomRefusal } from "../../rooms/refusal.ts";
import { type Handler, HttpError, type RequestContext } from "../app.ts";

/** 64 lowercase hex characters: an Ed25519 or X25519 public key. */
export const HEX64 = /^[0-9a-f]{64}$/;
/** 128 lowercase hex characters: an Ed25519 signature. */
export const HEX128 = /^[0-9a-f]{128}$/;
/** 32 lowercase hex characters: a room or blob id. */
export const ID32 = /^[0-9a-f]{32}$/;

/**
 * The authenticated caller's signing key. The auth middleware sets it on
 * every non-public route; its absence is a wiring bug, refused rather than
 * served anonymously.
 *
 * @example
 * ```ts
 * const caller = callerOf(ctx);
 * ```
 */
export function callerOf(ctx: RequestContext): string {
  if (!ctx.caller) throw new HttpError(401, "unauthenticated", "request authentication failed");
  return ctx.caller;
}

/**
 * A 400 `invalid_request` naming what is wrong with the body.
 *
 * @example
 * ```ts
 * throw badRequest("keys must be a non-empty array");
 * ```
 */
export function badRequest(message: string, code = "invalid_request"): HttpError {
  return new HttpError(400, code, message);
}

/**
 * A 404 `not_found`. Rooms a caller does not belong to get this same answer,
 * so that probing cannot tell which rooms exist.
 *
 * @example
 * ```ts
 * throw notFound("room");
 * ```
 */
export function notFound(what: string): HttpError {
  return new HttpError(404, "not_found", `${what} not found`);
}

/**
 * A 429 `quota_exceeded` naming the quota, its maximum and the caller's
 * current use, so a client can tell which limit it hit and by how much.
 *
 * @example
 * ```ts
 * throw quotaExceeded("rooms_per_user", 100, 100);
 * ```
 */
export function quotaExceeded(limit: string, max: number, used: number): HttpError {
  return new HttpError(
    429,
    "quota_exceeded",
    `quota ${limit} reached: ${used} used of ${max}`,
    { limit, max, used },
  );
}

/**
 * The value as a plain JSON object, else 400.
 *
 * @example
 * ```ts
 * const body = asObject(await readJson(req, ctx), "the request body");
 * ```
 */
export function asObject(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw badRequest(`${what} must be a JSON object`);
  }
  return v as Record<string, unknown>;
}

/**
 * `obj[field]` as a string matching `re` (if given), else 400.
 *
 * @example
 * ```ts
 * const kexPub = stringField(body, "kexPub", HEX64, "64 lowercase hex characters");
 * ```
 */
export function stringField(
  obj: Record<string, unknown>,
  field: string,
  re?: RegExp,
  shape = "a string",
): string {
  const v = obj[field];
  if (typeof v !== "string" || (re && !re.test(v))) {
    throw badRequest(`${field} must be ${re ? shape : "a string"}`);
  }
  return v;
}

/**
 * Runs `handler`, turning the store's typed errors and the room service's
 * refusals into HTTP answers:
 * invalid input 400, not found 404, unavailable 503 (`outcome_unknown` when
 * a write was sent and not acknowledged). Anything else (a bug)
 * is left to the app, which logs it and answers a bare 500.
 *
 * @example
 * ```ts
 * const route = { method: "GET", path: "/v1/x", handler: storeErrors(async () => json(200, {})) };
 * ```
 */
export function storeErrors(handler: Handler): Handler {
  return async (req, ctx) => {
    try {
      return await handler(req, ctx);
    } catch (err) {
      throw toHttpError(err);
    }
  };
}

/** The HTTP status of each room service refusal. */
const REFUSAL_STATUS: Record<RefusalCode, number> = {
  invalid_room_id: 400,
  invalid_subject: 400,
  invalid_change: 400,
  kex_mismatch: 400,
  unknown_user: 400,
  unknown_member: 400,
  empty_blob: 400,
  not_signer: 403,
  not_admin: 403,
  not_allowed: 403,
  not_found: 404,
  room_exists: 409,
  subject_taken: 409,
  conflict: 409,
  last_admin: 409,
  log_unverifiable: 409,
  quota_exceeded: 429,
  storage_full: 507,
  stream_unavailable: 503,
  cluster_degraded: 503,
};

/**
 * The HTTP answer for a store error or a room service refusal; other errors
 * are returned unchanged.
 *
 * @example
 * ```ts
 * try { await store.getRoom(id); } catch (e) { throw toHttpError(e); }
 * ```
 */
export function toHttpError(err: unknown): unknown {
  if (err instanceof RoomRefusal) {
    return new HttpError(
      REFUSAL_STATUS[err.code],
      err.code,
      err.message,
      err.details,
      err.retryAfterS !== undefined ? { "retry-after": String(err.retryAfterS) } : {},
    );
  }
  if (err instanceof HttpError || !(err instanceof StoreError)) return err;
  if (err instanceof InvalidInputError) return new HttpError(400, "invalid_input", err.message);
  if (err instanceof NotFoundError) return new HttpError(404, "not_found", err.message);
  // Before the plain 503: an unknown outcome is one too, with a different
  // promise to the client (it may have happened; retry and compare).
  if (err instanceof StoreOutcomeUnknownError) return outcomeUnknown();
  // Said as such (the key stays in the log): the operator's answer is to
  // upgrade this node, not to look for an outage.
  if (err instanceof RecordTooNewError) {
    return new HttpError(
      503,
      "record_too_new",
      "a control-plane record was written by a newer unibus than this node; upgrade this node",
    );
  }
  if (err instanceof StoreUnavailableError) {
    return new HttpError(503, "store_unavailable", "the control-plane store is unavailable");
  }
  return new HttpError(409, err.code, err.message);
}

/**
 * A 503 `outcome_unknown`: the store was sent the request's write and never
 * acknowledged it, so it may have happened (or may still). Distinct from
 * `store_unavailable` (nothing happened): a client retries the same request
 * and treats a conflict with the value it wrote as success (docs/api.md).
 *
 * @example
 * ```ts
 * throw outcomeUnknown({ id: blobId });
 * ```
 */
export function outcomeUnknown(details: Record<string, unknown> = {}): HttpError {
  return new HttpError(
    503,
    "outcome_unknown",
    "the write was sent to the store and not acknowledged: it may have happened; " +
      "retry the same request and compare what is stored",
    details,
    { "retry-after": "1" },
  );
}

export { KeyedLock } from "../../keyed_lock.ts";
