/**
 * Deno's node-compat `tls.TLSSocket` never calls back a zero-length
 * `write(buf, cb)` (Deno 2.9; plain `net.Socket` does). nats.js uses exactly
 * that write as a flush barrier when it drops a connection on purpose
 * (`NatsConnection.reconnect()`, and a stale-connection disconnect): over TLS
 * the barrier never resolves, the old socket is never closed, no reconnect
 * starts, and the client hangs. That is how a client's session refresh after
 * creating a room ("the session did not come back within 10 s") failed on
 * every TLS data plane, the three-node deploy test's included.
 *
 * The shim answers a zero-length write on a TLS socket itself, once the
 * socket has no bytes left queued (or is gone), so the barrier keeps its
 * meaning: everything written before it has left the process. Every other
 * write goes to Deno untouched.
 *
 * @module
 */

import { TLSSocket } from "node:tls";

let installed = false;

/** How often, and how long at most, a barrier waits for queued bytes to leave. */
const POLL_MS = 5;
const MAX_WAIT_MS = 2000;

type WriteCallback = (err?: Error | null) => void;

/**
 * Installs the shim (idempotent).
 *
 * @example
 * ```ts
 * installTlsEmptyWriteShim();
 * await nc.reconnect(); // over TLS, now completes
 * ```
 */
export function installTlsEmptyWriteShim(): void {
  if (installed) return;
  installed = true;
  const proto = TLSSocket.prototype as unknown as {
    write: (this: TLSSocket, chunk: unknown, ...rest: unknown[]) => boolean;
  };
  const write = proto.write;
  proto.write = function (this: TLSSocket, chunk: unknown, ...rest: unknown[]): boolean {
    const empty = (chunk instanceof Uint8Array && chunk.byteLength === 0) || chunk === "";
    const cb = rest.find((r): r is WriteCallback => typeof r === "function");
    if (!empty || !cb) return write.call(this, chunk, ...rest);
    const started = Date.now();
    const settle = () => {
      const drained = this.destroyed || this.writableLength === 0;
      if (drained || Date.now() - started > MAX_WAIT_MS) cb(null);
      else setTimeout(settle, POLL_MS);
    };
    queueMicrotask(settle);
    return true;
  };
}
