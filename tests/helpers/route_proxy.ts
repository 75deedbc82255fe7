/**
 * A network partition between the nodes of a loopback test cluster, made
 * without root, iptables or network namespaces: every route connection goes
 * through a TCP proxy in the test process, which can cut one node off.
 *
 * Node i's route listener binds `127.0.0.<11+i>:P` and its proxy binds
 * `127.0.0.1:P`, same port. Peers dial the proxies (their `--routes`), and
 * when nats-server gossips a peer to the others it names it by the address
 * its route came from (127.0.0.1, the proxy's side) and the peer's port, so
 * gossiped routes go through the proxies too. A connection is cut when it
 * goes to the isolated node or was dialled by it; the dialler is the
 * nats-server process holding the other end of the socket (from /proc: the
 * proxy sees only 127.0.0.1 and a port).
 *
 * @module
 */

/** The route listener address of node `i` behind its proxy. */
export function routeListenHost(i: number): string {
  return `127.0.0.${11 + i}`;
}

/** Proxies for the routes of a three-node loopback cluster. */
export interface RouteProxies {
  /** Cuts node `i` off from the others (open connections and new ones) until {@linkcode heal}. */
  isolate(i: number): void;
  /** Lets every route connect again. */
  heal(): void;
  /** Closes the listeners and every connection. */
  close(): Promise<void>;
}

interface Pair {
  into: number;
  from: number;
  close(): void;
}

/**
 * Starts one proxy per node: `127.0.0.1:ports[i]` to `routeListenHost(i):ports[i]`.
 * `natsPids()` gives each node's current nats-server pid (null while down).
 *
 * @example
 * ```ts
 * const p = startRouteProxies(clusterPorts, () => [0, 1, 2].map((i) => c.pids(i).nats));
 * try { p.isolate(2); …; p.heal(); } finally { await p.close(); }
 * ```
 */
export function startRouteProxies(
  ports: number[],
  natsPids: () => Array<number | null>,
): RouteProxies {
  let isolated: number | null = null;
  const pairs = new Set<Pair>();
  const listeners = ports.map((port) => Deno.listen({ hostname: "127.0.0.1", port }));
  const cutOff = (p: { into: number; from: number }) =>
    isolated !== null && (p.into === isolated || p.from === isolated || p.from < 0);

  const serve = async (into: number, listener: Deno.Listener<Deno.TcpConn>) => {
    for await (const client of listener) {
      handle(into, client).catch(() => {});
    }
  };
  const handle = async (into: number, client: Deno.TcpConn) => {
    const from = await dialler(client.remoteAddr.port, natsPids()).catch(() => -1);
    const pair: Pair = { into, from, close: () => {} };
    if (cutOff(pair)) return client.close();
    let upstream: Deno.TcpConn;
    try {
      upstream = await Deno.connect({ hostname: routeListenHost(into), port: ports[into] });
    } catch {
      return client.close();
    }
    let closed = false;
    pair.close = () => {
      if (closed) return;
      closed = true;
      pairs.delete(pair);
      for (const c of [client, upstream]) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    };
    pairs.add(pair);
    await Promise.all([
      client.readable.pipeTo(upstream.writable).catch(() => {}),
      upstream.readable.pipeTo(client.writable).catch(() => {}),
    ]).finally(() => pair.close());
  };
  const serving = listeners.map((l, i) => serve(i, l).catch(() => {}));

  return {
    isolate(i) {
      isolated = i;
      for (const p of [...pairs]) if (cutOff(p)) p.close();
    },
    heal() {
      isolated = null;
    },
    async close() {
      for (const l of listeners) {
        try {
          l.close();
        } catch { /* closed */ }
      }
      for (const p of [...pairs]) p.close();
      await Promise.all(serving);
    },
  };
}

/**
 * Which node's nats-server holds the local end `127.0.0.1:port` of a TCP
 * connection: its index in `pids`, or -1.
 */
async function dialler(port: number, pids: Array<number | null>): Promise<number> {
  const inode = await socketInode(port);
  if (inode === null) return -1;
  for (const [i, pid] of pids.entries()) {
    if (pid === null) continue;
    try {
      for await (const fd of Deno.readDir(`/proc/${pid}/fd`)) {
        const target = await Deno.readLink(`/proc/${pid}/fd/${fd.name}`).catch(() => "");
        if (target === `socket:[${inode}]`) return i;
      }
    } catch { /* the process is gone */ }
  }
  return -1;
}

/** The inode of the IPv4 TCP socket whose local end is 127.0.0.1:`port` (/proc/net/tcp). */
async function socketInode(port: number): Promise<string | null> {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const table = await Deno.readTextFile("/proc/net/tcp");
  for (const line of table.split("\n").slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols[1] === local) return cols[9];
  }
  return null;
}
