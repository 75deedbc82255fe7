/**
 * Asking every nats-server of the cluster at once through the system
 * account (`$SYS.REQ.SERVER.PING[.<what>]`): each answers on its own, so
 * the answers are gathered until they stop arriving.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";

/**
 * Every server's answer to `$SYS.REQ.SERVER.PING` (statsz) or
 * `$SYS.REQ.SERVER.PING.<what>` (`JSZ`, `ROUTEZ`, …), parsed; answers that
 * are not JSON are left out, and none is an empty list.
 *
 * @example
 * ```ts
 * const answers = await askEveryServer<{ server?: { name?: string } }>(sys, "JSZ");
 * ```
 */
export async function askEveryServer<T>(
  sys: NatsConnection,
  what: string | null,
  maxWaitMs = 2000,
): Promise<T[]> {
  const replies = await sys.requestMany(
    what === null ? "$SYS.REQ.SERVER.PING" : `$SYS.REQ.SERVER.PING.${what}`,
    "",
    { strategy: "stall", stall: 300, maxWait: maxWaitMs },
  );
  const answers: T[] = [];
  for await (const m of replies) {
    try {
      answers.push(m.json<T>());
    } catch { /* not JSON: not an answer */ }
  }
  return answers;
}
