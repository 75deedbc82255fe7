/**
 * Free loopback ports for integration tests.
 *
 * @module
 */

/**
 * A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it).
 *
 * @example
 * ```ts
 * const port = freePort();
 * ```
 */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Resolves when nothing accepts connections on `port` any more, or throws.
 *
 * @example
 * ```ts
 * await waitPortClosed(4250, 5000);
 * ```
 */
export async function waitPortClosed(port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`port ${port} still accepts connections after ${ms} ms`);
}

/**
 * True while a process with `pid` exists.
 *
 * @example
 * ```ts
 * isAlive(1234);
 * ```
 */
export function isAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // A zombie (state Z) has exited; it only waits for its parent to reap it.
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}
