/**
 * The process-wide patches the client library needs under Deno, in one
 * explicit, idempotent call. They change the process, not one connection,
 * so a program may install them itself at start (before anything else uses
 * node:net or node:tls); `connect()` installs them too, for programs that
 * do not.
 *
 * - The connection-reset guard: Deno's node-compat layer can raise an
 *   uncaught `ECONNRESET`/`EPIPE` after a server refuses a connection, which
 *   would kill the process; the guard swallows exactly that error.
 * - The TLS empty-write shim: nats.js's reconnect over Deno's node:tls hangs
 *   on a zero-length write; the shim skips it.
 *
 * @module
 */

import { isDeno } from "../platform/mod.ts";
import { installConnectionResetGuard } from "../nats/connection_reset_guard.ts";
import { installTlsEmptyWriteShim } from "../nats/tls_empty_write.ts";

/**
 * Installs the client's process-wide patches (idempotent).
 *
 * @example
 * ```ts
 * import { installClientPatches } from "@unibus/unibus/client";
 * installClientPatches();
 * ```
 */
export function installClientPatches(): void {
  // Both work around Deno's node-compat layer; Node.js's own sockets need
  // neither, and its process-wide error handling is the program's.
  if (!isDeno) return;
  installConnectionResetGuard();
  installTlsEmptyWriteShim();
}
