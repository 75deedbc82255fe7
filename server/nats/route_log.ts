/**
 * nats-server dials a missing route peer again every second and logs an
 * error each time ("Error trying to connect to route (attempt N)"): a node
 * whose peer is down for an hour writes thousands of identical lines to the
 * journal, and the one line that matters (when it went down, when it came
 * back) drowns. This turns them into one line per peer per change: down (the
 * first failure), still down (every few minutes), back (the route is made,
 * or the failures stopped for a while).
 *
 * @module
 */

import type { Logger } from "../../lib/log.ts";

// nats-server 2.10 logs the first attempt as an error and, depending on its
// log level, the following ones as errors or debug lines; with or without
// the "host:port - rid:N - " prefix. The peer is the address it dials.
const DIAL_FAILED =
  /^\[(?:ERR|WRN|DBG)\] (?:\S+ - rid:\d+ - )?Error trying to connect to route \(attempt (\d+)\): (.*dial \w+ (\S+?): .*)$/;
const CONNECTED = /^\[INF\] (\S+) - rid:\d+ - Route connection created/;

interface Down {
  since: number;
  lastSeen: number;
  lastLogged: number;
  failures: number;
  /** Fires when the failures have stopped for the quiet time: the peer is back. */
  quiet: ReturnType<typeof setTimeout>;
}

/**
 * Says route-dial failures once per peer per change.
 *
 * @example
 * ```ts
 * const routes = new RouteDialLog(log);
 * if (!routes.consume(line)) log.error(line); // any other line as before
 * ```
 */
export class RouteDialLog {
  readonly #log: Logger;
  readonly #stillDownEveryMs: number;
  readonly #quietMs: number;
  readonly #now: () => number;
  readonly #down = new Map<string, Down>();

  /**
   * `stillDownEveryMs`: how often a peer that stays down is mentioned
   * (5 min). `quietMs`: failures that stopped this long mean the peer came
   * back, even if the route was made from its side (10 s; nats-server dials
   * every second).
   */
  constructor(
    log: Logger,
    opts: { stillDownEveryMs?: number; quietMs?: number; now?: () => number } = {},
  ) {
    this.#log = log;
    this.#stillDownEveryMs = opts.stillDownEveryMs ?? 5 * 60_000;
    this.#quietMs = opts.quietMs ?? 10_000;
    this.#now = opts.now ?? Date.now;
  }

  /** True when `text` (a nats-server line without its pid) was a route dial line, said or held back. */
  consume(text: string): boolean {
    const now = this.#now();
    const failed = DIAL_FAILED.exec(text);
    if (failed) {
      const [, attempt, error, peer] = failed;
      const d = this.#down.get(peer);
      if (!d) {
        this.#down.set(peer, {
          since: now,
          lastSeen: now,
          lastLogged: now,
          failures: 1,
          quiet: this.#quietTimer(peer),
        });
        this.#log.error("route to a cluster peer is down; nats-server keeps dialling", {
          peer,
          error,
          attempt: Number(attempt),
          nextReportMin: Math.round(this.#stillDownEveryMs / 60_000),
        });
        return true;
      }
      d.lastSeen = now;
      d.failures++;
      clearTimeout(d.quiet);
      d.quiet = this.#quietTimer(peer);
      if (now - d.lastLogged >= this.#stillDownEveryMs) {
        d.lastLogged = now;
        this.#log.warn("route to a cluster peer is still down", {
          peer,
          error,
          downForS: Math.round((now - d.since) / 1000),
          failures: d.failures,
        });
      }
      return true;
    }
    const made = CONNECTED.exec(text);
    if (made) {
      const d = this.#down.get(made[1]);
      if (d) this.#back(made[1], d, "route connection created");
    }
    return false;
  }

  /** Stops the timers (the nats-server stopped). */
  close(): void {
    for (const d of this.#down.values()) clearTimeout(d.quiet);
    this.#down.clear();
  }

  // A route the peer made to us ends our dialling without a line naming the
  // peer's address: the failures just stop. A while without one means back.
  #quietTimer(peer: string): ReturnType<typeof setTimeout> {
    const t = setTimeout(() => {
      const d = this.#down.get(peer);
      if (d) this.#back(peer, d, "its route failures stopped");
    }, this.#quietMs);
    Deno.unrefTimer(t);
    return t;
  }

  #back(peer: string, d: Down, how: string): void {
    clearTimeout(d.quiet);
    this.#down.delete(peer);
    this.#log.info("route to a cluster peer is back", {
      peer,
      how,
      downForS: Math.round((d.lastSeen - d.since) / 1000),
      failures: d.failures,
    });
  }
}
