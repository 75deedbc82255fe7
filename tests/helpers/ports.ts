/**
 * Free loopback ports for integration tests.
 *
 * @module
 */

/**
 * Where the kernel picks the local ports of outgoing connections (and of
 * binds to port 0): Linux's `ip_local_port_range`, 32768–60999 by default.
 */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range")
      .trim().split(/\s+/).map(Number);
    if (Number.isInteger(lo) && Number.isInteger(hi) && lo > 0 && hi >= lo) return [lo, hi];
  } catch { /* not Linux: the default */ }
  return [32768, 60999];
}

const FIRST_PICKED = 10_000;
/** Ports handed out by this process, so that two picks never name the same one. */
const handedOut = new Set<number>();

/**
 * A TCP port on 127.0.0.1 that was free a moment ago, picked below the
 * kernel's ephemeral range. A port the kernel picks (port 0) comes from that
 * range, where every outgoing connection of any test also takes its local
 * port: a port picked there and bound a few seconds later (a node started
 * after the others) was now and then taken meanwhile. Below it, only another
 * explicit bind can take it.
 *
 * @example
 * ```ts
 * const port = freePort();
 * ```
 */
export function freePort(): number {
  const [lo] = ephemeralRange();
  for (let attempt = 0; lo - FIRST_PICKED > 1000 && attempt < 100; attempt++) {
    const port = FIRST_PICKED + Math.floor(Math.random() * (lo - FIRST_PICKED));
    if (handedOut.has(port)) continue;
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
    } catch {
      continue;
    }
    handedOut.add(port);
    return port;
  }
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
