/**
 * Telling JetStream's answers apart from members' messages on a plain room
 * (policy `none`: no packet, no signature to check).
 *
 * JetStream publishes its answers to whatever reply subject the asker set, so
 * any member of any persisted room can have them delivered on a plain room's
 * subject it is not a member of: a direct get's answer (bytes it stored
 * itself, so any content it likes), a stream's ack, a JetStream error, a "no
 * responders" status. nats-server marks most of these in a way a user cannot
 * remove: a direct get's answer always carries `Nats-Stream`, a status has a
 * code. An ack or an error is plain JSON without headers, of a fixed shape
 * whose only free part is a number: it is dropped by its shape. A member's
 * own message that is exactly such an object is dropped too; that is the
 * price of a room without signatures (use `sign` where it matters).
 *
 * @module
 */

import type { Msg } from "@nats-io/transport-node";

const ACK_KEYS = new Set(["stream", "seq", "duplicate", "domain", "error", "type"]);
const decoder = new TextDecoder();

/**
 * True when `msg`, seen on a plain room's subject, is an answer of
 * JetStream's that someone aimed there, never a member's message.
 *
 * @example
 * ```ts
 * nc.subscribe(plainSubject, { callback: (_e, msg) => { if (!isReflectedAnswer(msg)) use(msg); } });
 * ```
 */
export function isReflectedAnswer(msg: Pick<Msg, "headers" | "data">): boolean {
  const h = msg.headers;
  if (h) return h.has("Nats-Stream") || h.has("Nats-Sequence") || h.code > 0;
  // An ack or an error: `{"stream":"…","seq":N…}` or `{"error":{…}…}`, at most a
  // few hundred bytes; anything longer or not starting with `{` is not one.
  const d = msg.data;
  if (d.length === 0 || d.length > 512 || d[0] !== 0x7b) return false;
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(d));
  } catch {
    return false;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const keys = Object.keys(value);
  if (keys.length === 0 || !keys.every((k) => ACK_KEYS.has(k))) return false;
  const v = value as Record<string, unknown>;
  return (typeof v.stream === "string" && typeof v.seq === "number") ||
    (typeof v.error === "object" && v.error !== null);
}
