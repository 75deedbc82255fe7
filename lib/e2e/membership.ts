/**
 * Signed membership changes: the server stores and relays them but cannot
 * forge one, so clients compute a room's members themselves and seal room
 * keys only to those. A member the server inserts, or a key it swaps, fails
 * verification instead of being obeyed.
 *
 * A change is a small text document, signed byte for byte (no JSON
 * canonicalisation to get wrong in another language):
 *
 *   unibus/membership/v1
 *   room: <room id>
 *   seq: <0, 1, 2, …>
 *   prev: <hex SHA-256 of the previous change's text; 64 zeros for seq 0>
 *   op: create | add | remove
 *   subject: <room subject, lib/grammar.ts>  (create only)
 *   policy: <encrypt,sign,persist subset>   (create only; "none" when empty)
 *   member: <member's Ed25519 public key, hex>
 *   kex: <member's X25519 public key, hex>  (create/add)
 *   kex-sig: <member's binding signature, hex> (create/add)
 *   role: admin | member                    (create/add)
 *   epoch: <the epoch this change starts>
 *   by: <signer's Ed25519 public key, hex>
 *   at: <milliseconds since the Unix epoch>
 *
 * Lines end in "\n", fields appear in exactly this order, absent ones are
 * omitted. A change that names several members (a room created with members,
 * or members added in bulk) starts with `unibus/membership/v2` instead and
 * carries one `add: <member> <kex> <kex-sig> <role>` line per member after
 * the `role` line (create) or in place of member…role (add), ascending by
 * member, at most {@linkcode MAX_CHANGE_MEMBERS} members named in all: one
 * signature, one epoch and one key rotation for all of them. Rules: seq 0 is `create`, by its own member, role admin, epoch 0;
 * every later change is signed by an admin of the state before it (or, for a
 * `remove`, by the member leaving), names the previous change's hash, and
 * starts epoch + 1; no change removes the last admin. Every change starts an epoch,
 * so each epoch has one fixed member set: a removed member never gets the new
 * key, a new member never gets the old ones unless an admin shares them.
 *
 * @module
 */

import { sha256 } from "@noble/hashes/sha2.js";
import type { Ed25519KeyPair } from "../crypto/ed25519.ts";
import { isValidPublicKey, verifySignature } from "../crypto/ed25519.ts";
import { subjectViolation } from "../grammar.ts";
import { verifyKexBinding } from "../identity/identity.ts";
import { fromBase64, fromHex, toBase64, toHex, utf8 } from "./bytes.ts";

import type { RoomPolicy, SignedChange } from "../api/types.ts";
export type { RoomPolicy } from "../api/types.ts";

/** The fields of a change. */
export interface ChangeBody {
  room: string;
  seq: number;
  prev: string;
  op: "create" | "add" | "remove";
  subject?: string;
  policy?: RoomPolicy;
  /** Absent only in a bulk `add` (header v2), which names its members in `adds`. */
  member?: string;
  kex?: string;
  kexSig?: string;
  role?: "admin" | "member";
  /**
   * Header v2 only: the further members a `create` adds (at least 1), or the
   * members of a bulk `add` (at least 2), ascending by member.
   */
  adds?: MemberEntry[];
  epoch: number;
  by: string;
  at: number;
}

/** One member a change adds, with its kex binding and role. */
export interface MemberEntry {
  member: string;
  kex: string;
  kexSig: string;
  role: "admin" | "member";
}

/** A change as stored and sent: its exact text and the signature over it. */
export type { SignedChange } from "../api/types.ts";

/** A member as the verified log says. */
export interface VerifiedMember {
  signPub: string;
  kexPub: string;
  role: "admin" | "member";
}

/** What a verified log proves about a room. */
export interface RoomState {
  roomId: string;
  subject: string;
  policy: RoomPolicy;
  epoch: number;
  members: Map<string, VerifiedMember>;
  /** Members of every epoch so far: epoch → signPub → member. */
  epochs: Map<number, Map<string, VerifiedMember>>;
  /** Hash of the last change: the `prev` of the next one. */
  head: string;
  seq: number;
}

/** Thrown when a log does not verify; the message says which change and why. */
export class MembershipError extends Error {
  override name = "MembershipError";
}

/** The change would remove the room's last admin (by removal or by leaving). */
export class LastAdminError extends MembershipError {
  override name = "LastAdminError";
}

const HEADER = "unibus/membership/v1";
const HEADER_BULK = "unibus/membership/v2";

/**
 * The most members one change may name (a create's creator included). Bounds
 * the work a single change costs a verifier (one kex binding check each) and
 * its text (about 270 bytes a member, within the store's 64 KiB per change).
 */
export const MAX_CHANGE_MEMBERS = 128;
const ZERO_HASH = "0".repeat(64);

/** The SHA-256 (hex) of a change's text, which the next change names as `prev`. */
export function changeHash(change: SignedChange): string {
  return toHex(sha256(utf8(change.text)));
}

function policyText(p: RoomPolicy): string {
  const on = (["encrypt", "sign", "persist"] as const).filter((k) => p[k]);
  return on.length ? on.join(",") : "none";
}

/**
 * The exact text of a change body.
 *
 * @example
 * ```ts
 * const text = changeText({ room: "r1", seq: 0, prev: "0".repeat(64), op: "create", … });
 * ```
 */
export function changeText(b: ChangeBody): string {
  const bulk = b.adds !== undefined;
  const lines = [
    bulk ? HEADER_BULK : HEADER,
    `room: ${b.room}`,
    `seq: ${b.seq}`,
    `prev: ${b.prev}`,
    `op: ${b.op}`,
  ];
  if (b.op === "create") {
    lines.push(`subject: ${b.subject}`, `policy: ${policyText(b.policy!)}`);
  }
  if (!(bulk && b.op === "add")) {
    lines.push(`member: ${b.member}`);
    if (b.op !== "remove") lines.push(`kex: ${b.kex}`, `kex-sig: ${b.kexSig}`, `role: ${b.role}`);
  }
  for (const a of b.adds ?? []) lines.push(`add: ${a.member} ${a.kex} ${a.kexSig} ${a.role}`);
  lines.push(`epoch: ${b.epoch}`, `by: ${b.by}`, `at: ${b.at}`);
  for (const l of lines) {
    if (/[\n\r]/.test(l)) throw new MembershipError("a change field contains a line break");
  }
  return lines.join("\n") + "\n";
}

/**
 * Signs a change body.
 *
 * @example
 * ```ts
 * const change = signChange(body, identity.signer);
 * ```
 */
export function signChange(body: ChangeBody, signer: Ed25519KeyPair): SignedChange {
  if (toHex(signer.publicKey) !== body.by) throw new MembershipError("`by` must be the signer");
  // The canonical order is the verifier's, so callers may list members in
  // any order; an empty list is simply a v1 change.
  if (body.adds?.length) {
    body = { ...body, adds: [...body.adds].sort((x, y) => x.member < y.member ? -1 : 1) };
  } else if (body.adds) {
    body = { ...body, adds: undefined };
  }
  const text = changeText(body);
  return { text, sig: toBase64(signer.sign(utf8(text))) };
}

const HEX64 = /^[0-9a-f]{64}$/;
const HEX128 = /^[0-9a-f]{128}$/;

/**
 * Parses a change's text strictly (the text must be exactly what
 * {@linkcode changeText} produces for the parsed body).
 *
 * @example
 * ```ts
 * const body = parseChange(change.text);
 * ```
 */
export function parseChange(text: string): ChangeBody {
  const lines = text.split("\n");
  if (lines.pop() !== "" || (lines[0] !== HEADER && lines[0] !== HEADER_BULK)) {
    throw new MembershipError("not a membership change");
  }
  const bulk = lines[0] === HEADER_BULK;
  const fields = new Map<string, string>();
  const adds: MemberEntry[] = [];
  for (const line of lines.slice(1)) {
    const m = /^([a-z-]+): (.*)$/.exec(line);
    if (!m) throw new MembershipError(`malformed line "${line}"`);
    if (m[1] === "add" && bulk) {
      if (adds.length >= MAX_CHANGE_MEMBERS) {
        throw new MembershipError(`a change names at most ${MAX_CHANGE_MEMBERS} members`);
      }
      adds.push(parseAdd(m[2]));
      continue;
    }
    if (fields.has(m[1])) throw new MembershipError(`malformed line "${line}"`);
    fields.set(m[1], m[2]);
  }
  const get = (k: string) => {
    const v = fields.get(k);
    if (v === undefined) throw new MembershipError(`missing field ${k}`);
    return v;
  };
  const int = (k: string) => {
    const v = get(k);
    if (!/^(0|[1-9]\d{0,15})$/.test(v)) throw new MembershipError(`${k} is not a number`);
    return Number(v);
  };
  const op = get("op");
  if (op !== "create" && op !== "add" && op !== "remove") {
    throw new MembershipError(`unknown op ${op}`);
  }
  const body: ChangeBody = {
    room: get("room"),
    seq: int("seq"),
    prev: get("prev"),
    op,
    epoch: int("epoch"),
    by: get("by"),
    at: int("at"),
  };
  if (bulk) {
    // One spelling per change: a v2 change exists only to name several
    // members, so a create adds at least one besides its creator and an add
    // at least two; a single add stays a v1 change, byte for byte.
    if (op === "remove") throw new MembershipError("a v2 change cannot remove");
    const least = op === "create" ? 1 : 2;
    if (adds.length < least) {
      throw new MembershipError(`a v2 ${op} change names at least ${least} added members`);
    }
    if (adds.length + (op === "create" ? 1 : 0) > MAX_CHANGE_MEMBERS) {
      throw new MembershipError(`a change names at most ${MAX_CHANGE_MEMBERS} members`);
    }
    for (let i = 1; i < adds.length; i++) {
      if (!(adds[i - 1].member < adds[i].member)) {
        throw new MembershipError("added members must be in ascending order, each once");
      }
    }
    body.adds = adds;
  }
  if (!(bulk && op === "add")) body.member = get("member");
  if (op === "create") {
    body.subject = get("subject");
    // A log naming a subject outside the grammar does not verify, whoever
    // signed it: every member would otherwise be granted (or locked out by)
    // a subject the server cannot express or store exactly (lib/grammar.ts).
    const bad = subjectViolation(body.subject);
    if (bad) throw new MembershipError(`${bad.message} (rule ${bad.rule})`);
    const p = get("policy");
    const flags = p === "none" ? [] : p.split(",");
    if (!flags.every((f) => f === "encrypt" || f === "sign" || f === "persist")) {
      throw new MembershipError(`unknown policy ${p}`);
    }
    body.policy = {
      encrypt: flags.includes("encrypt"),
      sign: flags.includes("sign"),
      persist: flags.includes("persist"),
    };
  }
  if (op !== "remove" && body.member !== undefined) {
    body.kex = get("kex");
    body.kexSig = get("kex-sig");
    const role = get("role");
    if (role !== "admin" && role !== "member") throw new MembershipError(`unknown role ${role}`);
    body.role = role;
  }
  if (!/^[0-9a-f]{32}$/.test(body.room)) throw new MembershipError("room is not 32 lowercase hex");
  const keys = [["prev", body.prev], ["by", body.by]];
  if (body.member !== undefined) keys.push(["member", body.member]);
  for (const [k, v] of keys) {
    if (!HEX64.test(v)) throw new MembershipError(`${k} is not 64 lowercase hex`);
  }
  if (body.kex !== undefined && !HEX64.test(body.kex)) throw new MembershipError("kex is not hex");
  if (body.kexSig !== undefined && !HEX128.test(body.kexSig)) {
    throw new MembershipError("kex-sig is not hex");
  }
  if (changeText(body) !== text) throw new MembershipError("change text is not canonical");
  return body;
}

function parseAdd(value: string): MemberEntry {
  const [member, kex, kexSig, role, ...rest] = value.split(" ");
  if (
    rest.length || !HEX64.test(member ?? "") || !HEX64.test(kex ?? "") ||
    !HEX128.test(kexSig ?? "") || (role !== "admin" && role !== "member")
  ) {
    throw new MembershipError(`malformed add line "${value}"`);
  }
  return { member, kex, kexSig, role };
}

/**
 * Every member a change adds, with its kex binding and role: a create's
 * creator first, then its further members; an add's member or members;
 * nothing for a remove.
 *
 * @example
 * ```ts
 * for (const m of addedMembers(parseChange(change.text))) console.log(m.member, m.role);
 * ```
 */
export function addedMembers(b: ChangeBody): MemberEntry[] {
  if (b.op === "remove") return [];
  const first = b.member === undefined
    ? []
    : [{ member: b.member, kex: b.kex!, kexSig: b.kexSig!, role: b.role! }];
  return [...first, ...(b.adds ?? [])];
}

function verifyOne(change: SignedChange): ChangeBody {
  const body = parseChange(change.text);
  let sig: Uint8Array;
  try {
    sig = fromBase64(change.sig);
  } catch {
    throw new MembershipError(`change ${body.seq}: signature is not base64`);
  }
  const by = fromHex(body.by);
  if (!isValidPublicKey(by) || !verifySignature(by, utf8(change.text), sig)) {
    throw new MembershipError(`change ${body.seq}: signature by ${body.by} does not verify`);
  }
  for (const m of addedMembers(body)) {
    if (!verifyKexBinding(m.member, m.kex, m.kexSig)) {
      throw new MembershipError(
        `change ${body.seq}: ${m.member}'s key-exchange key is not bound to its signing key`,
      );
    }
  }
  return body;
}

/**
 * Verifies a whole log and returns the room state it proves. Throws
 * {@linkcode MembershipError} on the first change that breaks a rule.
 *
 * @example
 * ```ts
 * const state = verifyLog(roomId, changes);
 * state.members.has(bobHex);
 * ```
 */
export function verifyLog(roomId: string, changes: SignedChange[]): RoomState {
  if (changes.length === 0) throw new MembershipError("empty membership log");
  let state: RoomState | null = null;
  for (const change of changes) {
    const body = verifyOne(change);
    if (body.room !== roomId) throw new MembershipError(`change ${body.seq} is for another room`);
    state = apply(state, body, change);
  }
  return state!;
}

/**
 * Applies one more change to a verified state (same rules as the log).
 *
 * @example
 * ```ts
 * const next = applyChange(state, change);
 * ```
 */
export function applyChange(state: RoomState, change: SignedChange): RoomState {
  const body = verifyOne(change);
  if (body.room !== state.roomId) throw new MembershipError("change is for another room");
  return apply(state, body, change);
}

function apply(prev: RoomState | null, b: ChangeBody, change: SignedChange): RoomState {
  const hash = changeHash(change);
  if (prev === null) {
    if (b.op !== "create" || b.seq !== 0 || b.prev !== ZERO_HASH || b.epoch !== 0) {
      throw new MembershipError("the first change must create the room at seq 0, epoch 0");
    }
    if (b.by !== b.member || b.role !== "admin") {
      throw new MembershipError("the creator must add itself as the first admin");
    }
    if (b.policy!.encrypt && !b.policy!.sign) {
      // Packets are always signed when encrypted; a log saying otherwise is
      // not one a client wrote.
      throw new MembershipError("an encrypted room is always signed");
    }
    const members = new Map<string, VerifiedMember>([[b.member!, {
      signPub: b.member!,
      kexPub: b.kex!,
      role: "admin" as const,
    }]]);
    for (const a of b.adds ?? []) {
      if (members.has(a.member)) throw new MembershipError("change 0: the creator is added twice");
      members.set(a.member, { signPub: a.member, kexPub: a.kex, role: a.role });
    }
    return {
      roomId: b.room,
      subject: b.subject!,
      policy: b.policy!,
      epoch: 0,
      members,
      epochs: new Map([[0, members]]),
      head: hash,
      seq: 0,
    };
  }
  if (b.op === "create") throw new MembershipError(`change ${b.seq}: a room is created once`);
  if (b.seq !== prev.seq + 1 || b.prev !== prev.head) {
    throw new MembershipError(`change ${b.seq}: does not follow change ${prev.seq}`);
  }
  if (b.epoch !== prev.epoch + 1) throw new MembershipError(`change ${b.seq}: wrong epoch`);
  // Leaving needs no one's consent: a member may sign its own removal. It
  // grants the leaver nothing (it only loses the next epoch's key, which an
  // admin who stays generates and seals, §2.5), so no admin must sign it.
  const leaving = b.op === "remove" && b.by === b.member && prev.members.has(b.member);
  if (!leaving && prev.members.get(b.by)?.role !== "admin") {
    throw new MembershipError(`change ${b.seq}: ${b.by} is not an admin of the room`);
  }
  const members = new Map(prev.members);
  if (b.op === "add") {
    for (const a of addedMembers(b)) {
      if (members.has(a.member)) {
        throw new MembershipError(`change ${b.seq}: ${a.member} is already a member`);
      }
      members.set(a.member, { signPub: a.member, kexPub: a.kex, role: a.role });
    }
  } else {
    const gone = b.member!;
    if (!members.has(gone)) throw new MembershipError(`change ${b.seq}: not a member`);
    members.delete(gone);
    // A room without an admin could never change again: the new epoch's key
    // must be sealed by an admin of it (§2.5), so the members left would have
    // no key to talk with, and a compromised member could never be removed.
    // The last admin deletes the room, or adds another admin, instead.
    if (![...members.values()].some((m) => m.role === "admin")) {
      throw new LastAdminError(`change ${b.seq}: would remove the last admin`);
    }
  }
  const epochs = new Map(prev.epochs);
  epochs.set(b.epoch, members);
  return { ...prev, epoch: b.epoch, members, epochs, head: hash, seq: b.seq };
}
