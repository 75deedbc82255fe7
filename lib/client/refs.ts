/**
 * How the client library names a room: by its 32-hex id or by its subject,
 * checked by the one grammar (lib/grammar.ts) before anything is asked.
 *
 * @module
 */

import { subjectViolation } from "../grammar.ts";
import { InvalidSubjectError } from "./errors.ts";

/**
 * True for a room id (32 lowercase hex characters).
 *
 * @example
 * ```ts
 * isRoomId("0123456789abcdef0123456789abcdef"); // true
 * ```
 */
export function isRoomId(s: string): boolean {
  return /^[0-9a-f]{32}$/.test(s);
}

/**
 * The subject, or {@linkcode InvalidSubjectError} naming the broken rule.
 *
 * @example
 * ```ts
 * requireSubject("agent.scout.in"); // "agent.scout.in"
 * ```
 */
export function requireSubject(subject: string): string {
  const bad = subjectViolation(subject);
  if (bad) throw new InvalidSubjectError(bad.rule, bad.message);
  return subject;
}
