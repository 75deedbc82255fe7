/**
 * How the client library names a room: by its 32-hex id or by its subject,
 * checked by the one grammar (lib/grammar.ts) before anything is asked.
 *
 * @module
 */

import { inboxPrefixFor } from "../auth/acl.ts";
import { subjectViolation } from "../grammar.ts";
import { NOTICE_TOKEN } from "../notices.ts";
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

/**
 * True when `reply` is a literal subject under `_INBOX.<requester>.`, and not
 * under its `unibus.` notice subjects (the ACL denies those to members anyway).
 *
 * @example
 * ```ts
 * isReplySubjectOf(`${inboxPrefixFor(pub)}.abc.1`, pub); // true
 * ```
 */
export function isReplySubjectOf(reply: string, requester: string): boolean {
  if (!/^[0-9a-f]{64}$/.test(requester)) return false;
  const prefix = `${inboxPrefixFor(requester)}.`;
  if (!reply.startsWith(prefix) || reply.length > 255) return false;
  const tokens = reply.slice(prefix.length).split(".");
  if (tokens[0] === NOTICE_TOKEN) return false;
  return tokens.every((t) => /^[!-~]+$/.test(t) && t !== "*" && t !== ">");
}
