/**
 * Deno's node-compat layer can raise an *uncaught* `ECONNRESET` from the
 * socket after nats-server refuses a connection (seen with nats.js v2 and v3:
 * the client has already rejected `connect()` with "Authorization Violation",
 * then the server closes the socket and the late read error escapes every
 * handler). Uncaught, it kills the process: one refused client would take
 * `serve` down. The guard swallows exactly that error, counts it, and lets
 * every other uncaught error crash the process as before.
 *
 * Installed once, by `main.ts` and by the client library's `connect`.
 *
 * @module
 */

let installed = false;
let swallowed = 0;

/** A connection-reset error as node-compat raises it. */
function isConnectionReset(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "ECONNRESET" || code === "EPIPE";
}

/**
 * Installs the guard (idempotent). `onSwallow` is told about each swallowed
 * error, for a debug log line.
 *
 * @example
 * ```ts
 * installConnectionResetGuard();
 * // a late ECONNRESET from a refused NATS socket no longer ends the process
 * ```
 */
export function installConnectionResetGuard(onSwallow?: (err: Error) => void): void {
  if (installed) return;
  installed = true;
  globalThis.addEventListener("error", (ev) => {
    const err = (ev as ErrorEvent).error;
    if (!isConnectionReset(err)) return;
    ev.preventDefault();
    swallowed++;
    onSwallow?.(err as Error);
  });
}

/**
 * How many connection resets the guard has swallowed in this process.
 *
 * @example
 * ```ts
 * console.log(swallowedConnectionResets());
 * ```
 */
export function swallowedConnectionResets(): number {
  return swallowed;
}
