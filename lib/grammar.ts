/**
 * The one grammar of the strings unibus accepts from anyone: room subjects
 * and free text (handles and the like). Every boundary asks this module (the
 * HTTP routes, the CLI, the client library, membership-log verification, the
 * ACL builder, the store's checks), so a value one of them accepts is never
 * refused, or read differently, by another.
 *
 * Two attacks shaped it. A subject with a NUL byte was accepted by the API
 * and stored cut at the NUL, which handed its creator another room's
 * subject; and a subject above U+00FF made the victim's login JWT fail to
 * encode, locking every member out. Subjects are therefore printable ASCII
 * only, and text must be something every store keeps byte for byte.
 *
 * @example
 * ```ts
 * import { subjectViolation, textViolation } from "./grammar.ts";
 * subjectViolation("chat.ops"); // null
 * subjectViolation("chat.ops\u0000x")?.rule; // "control_character"
 * textViolation("ada", { maxLength: 64 }); // null
 * ```
 * @module
 */

/** Longest room subject, in characters (= bytes: subjects are ASCII). */
export const MAX_SUBJECT_LENGTH = 255;

/**
 * First characters a room subject may not start with. `$` is NATS's own
 * space (`$SYS`, `$JS.API`, `$KV`, `$O`), `_` its reply inboxes (`_INBOX`,
 * `_R_`), and the server's notices to users live under `_INBOX.<key>.unibus.`:
 * a room there would put those subjects into its members' ACL.
 */
export const RESERVED_SUBJECT_PREFIXES: readonly string[] = ["$", "_"];

/** Which subject rule a value breaks (stable: the HTTP API returns it). */
export type SubjectRule =
  | "not_a_string"
  | "empty"
  | "too_long"
  | "control_character"
  | "whitespace"
  | "not_ascii"
  | "empty_token"
  | "wildcard"
  | "reserved_prefix";

/** Which text rule a value breaks (stable: the HTTP API returns it). */
export type TextRule =
  | "not_a_string"
  | "empty"
  | "blank"
  | "too_long"
  | "lone_surrogate"
  | "nul"
  | "control_character";

/** A broken rule and a one-line explanation naming it. */
export interface Violation<R extends string> {
  rule: R;
  message: string;
}

function codePoint(c: number): string {
  return `U+${c.toString(16).toUpperCase().padStart(4, "0")}`;
}

// The ASCII whitespace a reader would not see; all of it is outside 0x21-0x7E.
const WHITESPACE = new Set([0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20]);

/**
 * The first rule `value` breaks as a room subject, or null when it is one: a
 * literal NATS subject of dot-separated non-empty tokens of printable ASCII
 * (0x21-0x7E), no whitespace, no wildcard characters (`*`, `>`) anywhere, at
 * most {@linkcode MAX_SUBJECT_LENGTH} characters, not starting with a
 * {@linkcode RESERVED_SUBJECT_PREFIXES reserved prefix}.
 *
 * @example
 * ```ts
 * import { subjectViolation } from "./grammar.ts";
 * subjectViolation("agent.scout.in"); // null
 * subjectViolation("chat.\u2603")?.rule; // "not_ascii"
 * subjectViolation("_INBOX.x")?.rule; // "reserved_prefix"
 * ```
 */
export function subjectViolation(value: unknown): Violation<SubjectRule> | null {
  const v = (rule: SubjectRule, message: string) => ({ rule, message: `subject: ${message}` });
  if (typeof value !== "string") return v("not_a_string", "must be a string");
  if (value.length === 0) return v("empty", "must not be empty");
  if (value.length > MAX_SUBJECT_LENGTH) {
    return v("too_long", `must be at most ${MAX_SUBJECT_LENGTH} characters`);
  }
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c >= 0x21 && c <= 0x7e) continue;
    if (WHITESPACE.has(c)) return v("whitespace", `whitespace (${codePoint(c)}) at index ${i}`);
    if (c < 0x20 || c === 0x7f) {
      return v("control_character", `control character ${codePoint(c)} at index ${i}`);
    }
    return v(
      "not_ascii",
      `only printable ASCII (0x21-0x7E) is allowed; ${
        codePoint(value.codePointAt(i)!)
      } at index ${i}`,
    );
  }
  const tokens = value.split(".");
  if (tokens.some((t) => t.length === 0)) {
    return v("empty_token", "tokens between dots must not be empty");
  }
  if (/[*>]/.test(value)) return v("wildcard", "wildcards ('*', '>') are not allowed");
  const reserved = RESERVED_SUBJECT_PREFIXES.find((p) => value.startsWith(p));
  if (reserved !== undefined) {
    return v("reserved_prefix", `subjects starting with '${reserved}' are reserved`);
  }
  return null;
}

/**
 * True when `value` is a valid room subject ({@linkcode subjectViolation} is null).
 *
 * @example
 * ```ts
 * import { isRoomSubject } from "./grammar.ts";
 * isRoomSubject("chat.ops"); // true
 * isRoomSubject("chat.*"); // false
 * ```
 */
export function isRoomSubject(value: unknown): value is string {
  return subjectViolation(value) === null;
}

/** Limits of a free-text field. */
export interface TextRules {
  /** Most characters (Unicode code points) allowed. */
  maxLength: number;
  /** Also refuse a value of only whitespace (a handle must show something). */
  requireVisible?: boolean;
  /** Allow "\n" (multi-line documents such as signed changes); other controls stay refused. */
  lineBreaks?: boolean;
}

/** Longest handle, in characters. */
export const MAX_HANDLE_LENGTH = 64;

/**
 * The first rule `value` breaks as free text, or null when it is fine: a
 * well-formed Unicode string (so valid UTF-8 once encoded: no lone
 * surrogates, which a store would replace with U+FFFD), no NUL (which SQLite
 * cuts a string at), no other control characters (C0, DEL, C1), at most
 * `rules.maxLength` code points.
 *
 * @example
 * ```ts
 * import { textViolation } from "./grammar.ts";
 * textViolation("snow \u2603", { maxLength: 64 }); // null
 * textViolation("a\u0000b", { maxLength: 64 })?.rule; // "nul"
 * textViolation("\ud800", { maxLength: 64 })?.rule; // "lone_surrogate"
 * ```
 */
export function textViolation(value: unknown, rules: TextRules): Violation<TextRule> | null {
  const v = (rule: TextRule, message: string) => ({ rule, message });
  if (typeof value !== "string") return v("not_a_string", "must be a string");
  if (value.length === 0) return v("empty", "must not be empty");
  if (!value.isWellFormed()) {
    return v("lone_surrogate", "must be valid Unicode (it contains a lone surrogate)");
  }
  let count = 0;
  for (const ch of value) {
    const c = ch.codePointAt(0)!;
    if (++count > rules.maxLength) {
      return v("too_long", `must be at most ${rules.maxLength} characters`);
    }
    if (c === 0) return v("nul", `contains a NUL character at index ${count - 1}`);
    if (c === 0x0a && rules.lineBreaks) continue;
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) {
      return v("control_character", `contains control character ${codePoint(c)}`);
    }
  }
  if (rules.requireVisible && value.trim().length === 0) {
    return v("blank", "must not be only whitespace");
  }
  return null;
}

/**
 * The first rule `value` breaks as a user handle (display name): text of
 * 1-{@linkcode MAX_HANDLE_LENGTH} characters that is not only whitespace.
 *
 * @example
 * ```ts
 * import { handleViolation } from "./grammar.ts";
 * handleViolation("ada"); // null
 * handleViolation("a\nb")?.rule; // "control_character"
 * ```
 */
export function handleViolation(value: unknown): Violation<TextRule> | null {
  return textViolation(value, { maxLength: MAX_HANDLE_LENGTH, requireVisible: true });
}
