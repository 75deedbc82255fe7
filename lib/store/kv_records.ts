/**
 * The KV store's records and keys: what each bucket holds and how its keys
 * are shaped (the invariants are in kv.ts), with the small helpers both the
 * store and its bucket access use.
 *
 * @module
 */

import { JetStreamApiError } from "@nats-io/jetstream";
import type { KvEntry } from "@nats-io/kv";
import { errors } from "@nats-io/nats-core";
import {
  type BlobMeta,
  type Member,
  memberRow,
  type Room,
  type RoomMemberSpec,
  StoreOutcomeUnknownError,
  StoreUnavailableError,
} from "./store.ts";

/**
 * The format of the control-plane records this code writes, and the newest
 * it can read. Every object record carries it in {@linkcode FORMAT_FIELD};
 * one without the field was written before formats were numbered and is
 * format 1 (the same shape). Rules (docs/operations.md "Upgrades"): a new
 * optional field keeps the format (older readers ignore it); a change an
 * older node would misread (a field renamed, re-typed or given a new
 * meaning, a record that must not be acted on without understanding it)
 * bumps it, and an older node then refuses the record
 * ({@linkcode RecordTooNewError}) instead of guessing. Lists (a member's index
 * of rooms) carry no field: a later format would make them objects, which an
 * older node already refuses as damaged.
 */
export const KV_RECORD_FORMAT = 1;

/** The field of an object record that names its format. */
export const FORMAT_FIELD = "format";

/**
 * `value` as written: an object record gets {@linkcode FORMAT_FIELD}.
 *
 * @example
 * ```ts
 * stamped({ id: "r1", inc: "ab" }); // { id: "r1", inc: "ab", format: 1 }
 * stamped(["r1"]);                  // ["r1"]
 * ```
 */
export function stamped(value: unknown): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
  return { ...value, [FORMAT_FIELD]: KV_RECORD_FORMAT };
}

/**
 * A record's format as read: 1 when it has no {@linkcode FORMAT_FIELD}, null
 * when the field is there but not a positive whole number (damaged), and the
 * record without the field, so that what the store hands on (and compares
 * with what it meant to write) is the same whatever the format field said.
 *
 * @example
 * ```ts
 * readFormat({ id: "r1", format: 2 }); // { format: 2, value: { id: "r1" } }
 * readFormat({ id: "r1" });            // { format: 1, value: { id: "r1" } }
 * ```
 */
export function readFormat<T>(record: T): { format: number | null; value: T } {
  if (Array.isArray(record) || !Object.hasOwn(record as object, FORMAT_FIELD)) {
    return { format: 1, value: record };
  }
  const { [FORMAT_FIELD]: format, ...rest } = record as Record<string, unknown>;
  const ok = typeof format === "number" && Number.isSafeInteger(format) && format >= 1;
  return { format: ok ? format : null, value: rest as T };
}

/** Set once every room and blob has its quota hint (invariant 5). */
export const QUOTA_HINTS_MARKER = "quota_hints.v1";

export interface RoomRecord extends Room {
  /** Incarnation: random per creation, so a re-created room starts empty. */
  inc: string;
}

/** A visible room record with its revision, as {@linkcode KvStore} reads it. */
export type RoomRead = { value: RoomRecord; revision: number };

/** A linearizable read under way (`KvAccess.startCurrent`). */
export interface CurrentRead {
  /** The read before it is confirmed (null on failure): for starting dependent reads only. */
  guess: Promise<KvEntry | null>;
  /** The read, confirmed current. */
  confirmed: Promise<KvEntry | null>;
}

export interface SubjectClaim {
  id: string;
  inc: string;
}

export interface MemberRecord {
  /** Seq of the newest change this member set follows; -1 before any. */
  seq: number;
  /** That change, so the log can be restored if its own key was never written. */
  change: { text: string; sig: string } | null;
  members: Omit<Member, "roomId">[];
}

export interface BlobRecord {
  roomId: string;
  inc: string;
  owner: string;
  size: number;
  createdAt: number;
  object: string;
}

export const te = new TextEncoder();
export const td = new TextDecoder();

export function b64url(text: string): string {
  let bin = "";
  for (const b of te.encode(text)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function fromB64url(token: string): string {
  const bin = atob(token.replace(/-/g, "+").replace(/_/g, "/"));
  return td.decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
}

/**
 * An id as one KV key token. Ids may contain '.', the token separator, so
 * those are base64url-encoded behind a '=' (which no id starts with).
 */
export function tok(id: string): string {
  return id.includes(".") ? `=${b64url(id)}` : id;
}

export function untok(token: string): string {
  return token.startsWith("=") ? fromB64url(token.slice(1)) : token;
}

/** A room's id record (invariant 1). */
export function roomKey(id: string): string {
  return `id.${tok(id)}`;
}

/** A subject's claim (invariant 1). */
export function subjectKey(subject: string): string {
  return `subject.${b64url(subject)}`;
}

/** Where everything of one incarnation of a room is keyed (invariant 2). */
export function roomPrefix(r: { id: string; inc: string }): string {
  return `${tok(r.id)}.${r.inc}`;
}

/** A room's quota hint under its creator (invariant 5). */
export function creatorKey(r: { createdBy: string; id: string; inc: string }): string {
  return `creator.${r.createdBy}.${roomPrefix(r)}`;
}

export function newIncarnation(): string {
  const b = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** A record's bytes, {@linkcode stamped} with this code's format. */
export const encode = (v: unknown) => te.encode(JSON.stringify(stamped(v)));

export function live(e: KvEntry | null): e is KvEntry {
  return e !== null && e.operation === "PUT";
}

/** A lost compare-and-set: re-read and try again. */
export class Raced extends Error {}

/** Bound on compare-and-set retries; contention on one key is never this high. */
export const MAX_CAS_ATTEMPTS = 50;

/** The new member set; a member whose role is unchanged keeps its stored row. */
export function mergeMembers(
  current: Omit<Member, "roomId">[],
  next: RoomMemberSpec[],
  now: number,
): Omit<Member, "roomId">[] {
  const have = new Map(current.map((m) => [m.signPub, m]));
  return next.map((spec) => {
    const old = have.get(spec.signPub);
    return old && old.role === spec.role ? old : memberRow(spec, now);
  });
}

export function publicRoom(r: RoomRecord): Room {
  return {
    id: r.id,
    subject: r.subject,
    policy: { ...r.policy },
    createdBy: r.createdBy,
    createdAt: r.createdAt,
    epoch: r.epoch,
  };
}

/** A blob's quota hint under its owner (invariant 5); `object` is unique per put. */
export function ownerKey(r: BlobRecord): string {
  return `owner.${r.owner}.${r.object}`;
}

/** A blob's entry in its room's index, which deleteRoom lists. */
export function blobRoomKey(blobId: string, r: BlobRecord): string {
  return `room.${tok(r.roomId)}.${r.inc}.${tok(blobId)}`;
}

/** Width of a nonce expiry slot: pruning lists ~14 slots per max age. */
export const NONCE_SLOT_MS = 10_000;

export function nonceExpiryKey(expiresAt: number, key: string): string {
  return `exp.${Math.floor(expiresAt / NONCE_SLOT_MS)}.${key}`;
}

export function metaOf(id: string, r: BlobRecord): BlobMeta {
  return { id, roomId: r.roomId, owner: r.owner, size: r.size, createdAt: r.createdAt };
}

export function same(a: { text: string; sig: string }, b: { text: string; sig: string }): boolean {
  return a.text === b.text && a.sig === b.sig;
}

export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Whether nats-server `version` checks a per-subject expectation above the
 * stream's last sequence only at apply time (`KvAccess.committedRevision`):
 * 2.10.6 to 2.10.x.
 */
export function checksRevisionAtApply(version: string): boolean {
  const m = /^2\.10\.(\d+)(?:$|[-+])/.exec(version);
  return m !== null && Number(m[1]) >= 6;
}

/**
 * A request that was sent and got no answer: a timeout, or the connection
 * closed while it waited. Its write may have been stored.
 */
export function unanswered(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if (e instanceof errors.TimeoutError || e.name === "TimeoutError") return true;
    if (e instanceof errors.ClosedConnectionError || e.name === "ClosedConnectionError") {
      return true;
    }
    // Lost while waiting for its answer ("connection closed", "connection
    // disconnected"): it may have reached the server first.
    if (e.name === "RequestError" && /closed|disconnected/i.test(e.message)) return true;
  }
  return false;
}

/** Whether `bytes` hash to an object store digest (`SHA-256=<base64url>`). */
export async function digestMatches(bytes: Uint8Array, digest: string): Promise<boolean> {
  const m = /^SHA-256=(.+)$/i.exec(digest);
  if (!m) return false;
  let want: Uint8Array;
  try {
    const b64 = m[1].replace(/-/g, "+").replace(/_/g, "/");
    want = Uint8Array.from(
      atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, "=")),
      (c) => c.charCodeAt(0),
    );
  } catch {
    return false;
  }
  const got = new Uint8Array(
    await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>),
  );
  return got.length === want.length && got.every((x, i) => x === want[i]);
}

/**
 * Runs the steps of an operation that come before its commit point: if a
 * step's write has an unknown outcome, the operation's is still known (it
 * did not happen: nothing it wrote so far is visible), so the caller hears
 * "unavailable", not "outcome unknown".
 */
export async function definitely<T>(steps: () => Promise<T>): Promise<T> {
  try {
    return await steps();
  } catch (err) {
    if (!(err instanceof StoreOutcomeUnknownError)) throw err;
    throw new StoreUnavailableError(`${err.message}; nothing was committed`, { cause: err });
  }
}

export function isWrongLastSequence(err: unknown): boolean {
  return err instanceof JetStreamApiError && (err.code === 10071 || err.code === 10164);
}
