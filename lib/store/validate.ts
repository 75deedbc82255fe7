/**
 * The store's input rules and row builders, beside the contract so every
 * backend rejects the same input with the same error, before anything is
 * written, and builds the same rows from it.
 *
 * @module
 */

import { handleViolation, subjectViolation, textViolation, type Violation } from "../grammar.ts";
import { InvalidInputError } from "./errors.ts";
import type {
  Member,
  NewBlob,
  NewMember,
  NewRoom,
  NewSealedKey,
  NewUser,
  Room,
  RoomGenesis,
  RoomMemberSpec,
  RoomStateAfter,
  SealedKey,
  User,
} from "./types.ts";

const HEX64 = /^[0-9a-f]{64}$/;
const HEX = /^(?:[0-9a-f]{2})+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
// Ids end up in KV keys and URLs, so keep them to a conservative alphabet.
const ID = /^[A-Za-z0-9_-][A-Za-z0-9._=-]{0,127}$/;
/** Longest stored text field (a signed change, a nonce), in characters. */
export const MAX_TEXT_LENGTH = 64 * 1024;
const MAX_TEXT = MAX_TEXT_LENGTH;

function fail(field: string, reason: string, rule?: string): never {
  throw new InvalidInputError(field, reason, rule);
}

function failOn(field: string, violation: Violation<string> | null): void {
  if (violation) fail(field, violation.message, violation.rule);
}

/**
 * Checks a record field against the store's cheap type rules and throws
 * {@linkcode InvalidInputError} on the first violation.
 *
 * @example
 * ```ts
 * import { check } from "./types.ts";
 * check.signPub("signPub", "ab".repeat(32)); // ok
 * ```
 */
/** The largest per-user connection limit an operator may set. */
export const MAX_CONNECTIONS_LIMIT = 100_000;

export const check = {
  /** A per-user connection limit: 1 to {@linkcode MAX_CONNECTIONS_LIMIT} (revoke to refuse all). */
  maxConnections(field: string, v: unknown): void {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > MAX_CONNECTIONS_LIMIT) {
      fail(field, `must be an integer from 1 to ${MAX_CONNECTIONS_LIMIT}`);
    }
  },
  signPub(field: string, v: unknown): void {
    if (typeof v !== "string" || !HEX64.test(v)) fail(field, "must be 64 lowercase hex characters");
  },
  kexPub(field: string, v: unknown): void {
    if (typeof v !== "string" || !HEX64.test(v)) fail(field, "must be 64 lowercase hex characters");
  },
  hex(field: string, v: unknown): void {
    if (typeof v !== "string" || v.length > MAX_TEXT || !HEX.test(v)) {
      fail(field, "must be non-empty lowercase hex");
    }
  },
  base64(field: string, v: unknown): void {
    if (typeof v !== "string" || v.length === 0 || v.length > MAX_TEXT || !BASE64.test(v)) {
      fail(field, "must be non-empty padded base64");
    }
  },
  id(field: string, v: unknown): void {
    if (typeof v !== "string" || !ID.test(v)) {
      fail(field, "must be 1-128 characters of A-Z a-z 0-9 . _ = - not starting with '.'");
    }
  },
  // Subjects and text follow lib/grammar.ts, the rule every other boundary
  // applies, so nothing the API accepts is cut or rewritten here (SQLite cuts
  // a string at NUL and turns a lone surrogate into U+FFFD).
  subject(field: string, v: unknown): void {
    failOn(field, subjectViolation(v));
  },
  handle(field: string, v: unknown): void {
    failOn(field, handleViolation(v));
  },
  text(field: string, v: unknown): void {
    failOn(field, textViolation(v, { maxLength: MAX_TEXT, lineBreaks: true }));
  },
  role(field: string, v: unknown): void {
    if (v !== "admin" && v !== "member") fail(field, 'must be "admin" or "member"');
  },
  count(field: string, v: unknown): void {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      fail(field, "must be a non-negative integer");
    }
  },
  bool(field: string, v: unknown): void {
    if (typeof v !== "boolean") fail(field, "must be a boolean");
  },
  bytes(field: string, v: unknown): void {
    if (!(v instanceof Uint8Array)) fail(field, "must be a Uint8Array");
  },
};

/** Validates a {@linkcode NewUser} (through {@linkcode newUserRow}, before either backend writes). */
function validateNewUser(u: NewUser): void {
  check.signPub("signPub", u.signPub);
  if (u.kexPub !== null) check.kexPub("kexPub", u.kexPub);
  if (u.kexSig !== null) check.hex("kexSig", u.kexSig);
  if ((u.kexPub === null) !== (u.kexSig === null)) {
    fail("kexSig", "kexPub and kexSig must be both set or both null");
  }
  check.handle("handle", u.handle);
  check.role("role", u.role);
  if (u.createdAt !== undefined) check.count("createdAt", u.createdAt);
}

/** Validates a {@linkcode NewRoom}. */
function validateNewRoom(r: NewRoom): void {
  check.id("id", r.id);
  check.subject("subject", r.subject);
  if (typeof r.policy !== "object" || r.policy === null) fail("policy", "must be an object");
  check.bool("policy.encrypt", r.policy.encrypt);
  check.bool("policy.sign", r.policy.sign);
  check.bool("policy.persist", r.policy.persist);
  check.signPub("createdBy", r.createdBy);
  if (r.createdAt !== undefined) check.count("createdAt", r.createdAt);
}

/**
 * Validates a {@linkcode NewMember}.
 *
 * @example
 * ```ts
 * import { validateNewMember } from "./types.ts";
 * const k = "ab".repeat(32);
 * validateNewMember({ roomId: "ops", signPub: k, role: "member", addedBy: k, change: null });
 * ```
 */
export function validateNewMember(m: NewMember): void {
  check.id("roomId", m.roomId);
  check.signPub("signPub", m.signPub);
  check.role("role", m.role);
  check.signPub("addedBy", m.addedBy);
  if (m.change !== null) check.text("change", m.change);
  if (m.addedAt !== undefined) check.count("addedAt", m.addedAt);
}

/** Validates one {@linkcode NewSealedKey}. */
function validateNewSealedKey(k: NewSealedKey): void {
  check.signPub("recipient", k.recipient);
  check.base64("sealed", k.sealed);
  check.signPub("sealedBy", k.sealedBy);
  if (k.createdAt !== undefined) check.count("createdAt", k.createdAt);
}

/**
 * Validates a {@linkcode NewBlob}.
 *
 * @example
 * ```ts
 * import { validateNewBlob } from "./types.ts";
 * validateNewBlob({ id: "b1", roomId: "ops", owner: "ab".repeat(32), data: new Uint8Array(1) });
 * ```
 */
export function validateNewBlob(b: NewBlob): void {
  check.id("id", b.id);
  check.id("roomId", b.roomId);
  check.signPub("owner", b.owner);
  check.bytes("data", b.data);
  if (b.createdAt !== undefined) check.count("createdAt", b.createdAt);
}

/** Validates one {@linkcode RoomMemberSpec}. */
function validateRoomMemberSpec(m: RoomMemberSpec): void {
  if (typeof m !== "object" || m === null) fail("members", "must be objects");
  check.signPub("signPub", m.signPub);
  check.role("role", m.role);
  check.signPub("addedBy", m.addedBy);
  if (m.change !== null) check.text("change", m.change);
  if (m.addedAt !== undefined) check.count("addedAt", m.addedAt);
}

/** Validates a member set (no key twice). */
function validateMemberSet(members: RoomMemberSpec[]): void {
  if (!Array.isArray(members)) fail("members", "must be an array");
  const seen = new Set<string>();
  for (const m of members) {
    validateRoomMemberSpec(m);
    if (seen.has(m.signPub)) fail("members", `${m.signPub} twice`);
    seen.add(m.signPub);
  }
}

/**
 * Validates the arguments of {@linkcode Store.applyRoomChange}.
 *
 * @example
 * ```ts
 * import { validateAppliedChange } from "./types.ts";
 * validateAppliedChange("ops", 1, { text: "unibus/…\n", sig: "AAAA" }, { members: [], epoch: 0 });
 * ```
 */
export function validateAppliedChange(
  roomId: string,
  seq: number,
  change: { text: string; sig: string },
  after: RoomStateAfter,
): void {
  validateRoomChange(roomId, seq, change);
  if (typeof after !== "object" || after === null) fail("after", "must be an object");
  validateMemberSet(after.members);
  check.count("after.epoch", after.epoch);
}

/**
 * Validates a {@linkcode RoomGenesis}.
 *
 * @example
 * ```ts
 * import { validateGenesis } from "./types.ts";
 * validateGenesis("ops", { change: { text: "x\n", sig: "AAAA" }, members: [] });
 * ```
 */
export function validateGenesis(roomId: string, g: RoomGenesis): void {
  if (typeof g !== "object" || g === null) fail("genesis", "must be an object");
  validateRoomChange(roomId, 0, g.change);
  validateMemberSet(g.members);
}

/** Validates the arguments of {@linkcode Store.applyRoomChange}'s change. */
function validateRoomChange(
  roomId: string,
  seq: number,
  change: { text: string; sig: string },
): void {
  check.id("roomId", roomId);
  check.count("seq", seq);
  if (typeof change !== "object" || change === null) fail("change", "must be an object");
  check.text("change.text", change.text);
  check.base64("change.sig", change.sig);
}

/**
 * Validates the arguments of {@linkcode Store.rememberNonce}.
 *
 * @example
 * ```ts
 * import { validateNonce } from "./types.ts";
 * validateNonce("n-1", Date.now() + 60_000, Date.now());
 * ```
 */
export function validateNonce(nonce: string, expiresAt: number, now: number): void {
  check.text("nonce", nonce);
  if (nonce.length > 256) fail("nonce", "must be at most 256 characters");
  check.count("expiresAt", expiresAt);
  check.count("now", now);
}

/**
 * Validates the arguments of {@linkcode Store.setRoomEpoch}: the epoch only
 * moves forward, since going back would reuse an epoch whose keys are
 * immutable and maybe leaked.
 *
 * @example
 * ```ts
 * import { validateEpochMove } from "./types.ts";
 * validateEpochMove("ops", 0, 1);
 * ```
 */
export function validateEpochMove(id: string, expectedEpoch: number, newEpoch: number): void {
  check.id("id", id);
  check.count("expectedEpoch", expectedEpoch);
  check.count("newEpoch", newEpoch);
  if (newEpoch <= expectedEpoch) fail("newEpoch", "must be greater than expectedEpoch");
}

/**
 * The stored form of a new user (validated; status "active", createdAt
 * defaulted), as both backends write it.
 *
 * @example
 * ```ts
 * import { newUserRow } from "./types.ts";
 * newUserRow({ signPub: "ab".repeat(32), kexPub: null, kexSig: null, handle: "ada", role: "admin" });
 * ```
 */
export function newUserRow(user: NewUser): User {
  validateNewUser(user);
  return {
    signPub: user.signPub,
    kexPub: user.kexPub,
    kexSig: user.kexSig,
    handle: user.handle,
    role: user.role,
    status: "active",
    createdAt: user.createdAt ?? Date.now(),
  };
}

/**
 * The stored form of a new room (validated; epoch 0, createdAt defaulted).
 *
 * @example
 * ```ts
 * import { newRoomRow } from "./types.ts";
 * newRoomRow({ id: "ops", subject: "chat.ops", policy: { encrypt: true, sign: true, persist: false }, createdBy: "ab".repeat(32) });
 * ```
 */
export function newRoomRow(room: NewRoom): Room {
  validateNewRoom(room);
  return {
    id: room.id,
    subject: room.subject,
    policy: { ...room.policy },
    createdBy: room.createdBy,
    createdAt: room.createdAt ?? Date.now(),
    epoch: 0,
  };
}

/**
 * The stored form of one epoch's sealed keys: validated, no recipient
 * twice, createdAt defaulted. Both backends refuse the same input.
 *
 * @example
 * ```ts
 * import { sealedKeyRows } from "./types.ts";
 * const k = "ab".repeat(32);
 * sealedKeyRows("ops", 0, [{ recipient: k, sealed: "AAAA", sealedBy: k }]);
 * ```
 */
export function sealedKeyRows(roomId: string, epoch: number, keys: NewSealedKey[]): SealedKey[] {
  check.id("roomId", roomId);
  check.count("epoch", epoch);
  if (!Array.isArray(keys) || keys.length === 0) fail("keys", "must be a non-empty array");
  const seen = new Set<string>();
  const now = Date.now();
  return keys.map((k) => {
    validateNewSealedKey(k);
    if (seen.has(k.recipient)) fail("keys", `${k.recipient} twice`);
    seen.add(k.recipient);
    return {
      roomId,
      epoch,
      recipient: k.recipient,
      sealed: k.sealed,
      sealedBy: k.sealedBy,
      createdAt: k.createdAt ?? now,
    };
  });
}

/**
 * The stored form of one member (addedAt defaulted to `now`), as both
 * backends write it; the caller has validated it.
 *
 * @example
 * ```ts
 * import { memberRow } from "./types.ts";
 * const k = "ab".repeat(32);
 * memberRow({ signPub: k, role: "admin", addedBy: k, change: null }, Date.now());
 * ```
 */
export function memberRow(m: RoomMemberSpec | NewMember, now: number): Omit<Member, "roomId"> {
  return {
    signPub: m.signPub,
    role: m.role,
    addedBy: m.addedBy,
    addedAt: m.addedAt ?? now,
    change: m.change,
  };
}
