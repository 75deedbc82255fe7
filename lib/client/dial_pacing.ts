/**
 * Reconnect pacing of the client's NATS connection.
 *
 * @module
 */

const RECONNECT_WAIT_MS = 250;

/**
 * nats.js's wait between dial attempts to a server: 250 ms plus jitter
 * (100 ms, 1 s with TLS, as nats.js's defaults), counted from the last
 * attempt. A refresh this client asks for dials at once: it re-authenticates
 * on purpose right after a connect, and waiting out that pause made every
 * `createRoom` after the first take 250–350 ms more (1.25 s with TLS).
 * Only the first attempt is immediate, so a server that is down is still
 * retried at the usual pace, never in a tight loop.
 */
export class DialPacing {
  #immediate = false;
  readonly #jitter: number;

  /** `tls`: the connection uses TLS (nats.js waits longer then). */
  constructor(tls: boolean) {
    this.#jitter = tls ? 1000 : 100;
  }

  /**
   * The next dial attempt, and only it, goes at once.
   *
   * @example
   * ```ts
   * const pacing = new DialPacing(false);
   * pacing.immediateOnce();
   * pacing.delay(); // 0
   * pacing.delay(); // 250..350
   * ```
   */
  immediateOnce(): void {
    this.#immediate = true;
  }

  /** Milliseconds to wait since the last attempt (nats.js `reconnectDelayHandler`). */
  readonly delay = (): number => {
    if (this.#immediate) {
      this.#immediate = false;
      return 0;
    }
    return RECONNECT_WAIT_MS + Math.floor(Math.random() * (this.#jitter + 1));
  };
}
