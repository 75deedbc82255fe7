/**
 * Parsing of listen addresses and the loopback test that guards every bind.
 *
 * @module
 */

/** A host and port to listen on or connect to. */
export interface HostPort {
  host: string;
  port: number;
}

/**
 * Parses `host:port` (IPv6 in brackets: `[::1]:8470`). Throws a one-line
 * `Error` naming the bad part.
 *
 * @example
 * ```ts
 * parseHostPort("127.0.0.1:8470"); // { host: "127.0.0.1", port: 8470 }
 * parseHostPort("[::1]:0");        // { host: "::1", port: 0 }
 * ```
 */
export function parseHostPort(value: string): HostPort {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(value) ?? /^([^:\s\[\]]+):(\d+)$/.exec(value);
  if (!m) throw new Error(`"${value}" is not host:port (for IPv6 use [addr]:port)`);
  return { host: m[1], port: parsePort(m[2]) };
}

/**
 * Parses a TCP port number (0 means "any free port").
 *
 * @example
 * ```ts
 * parsePort("4250"); // 4250
 * ```
 */
export function parsePort(value: string): number {
  if (!/^\d{1,5}$/.test(value)) throw new Error(`"${value}" is not a port number`);
  const port = Number(value);
  if (port > 65535) throw new Error(`port ${port} is out of range (0-65535)`);
  return port;
}

/**
 * True when `host` can only be reached from this machine: `localhost`, the
 * 127.0.0.0/8 range or `::1`. Any other name counts as public, because a name
 * can resolve to anything and a bind decision must not depend on DNS.
 *
 * @example
 * ```ts
 * isLoopbackHost("127.0.0.1"); // true
 * isLoopbackHost("0.0.0.0");   // false
 * ```
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  if (h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  const v4 = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  return v4 !== null && v4.slice(1).every((o) => Number(o) <= 255);
}

/**
 * True when a NATS or HTTP URL points at this machine only.
 *
 * @example
 * ```ts
 * isLoopbackUrl("nats://127.0.0.1:4250"); // true
 * ```
 */
export function isLoopbackUrl(url: string): boolean {
  try {
    return isLoopbackHost(new URL(url).hostname);
  } catch {
    return false;
  }
}

/**
 * The host to dial to reach a listener bound to `host`: a wildcard bind is
 * reached on loopback (`0.0.0.0` → `127.0.0.1`, `::` → `::1`, unbracketed);
 * any other IPv6 literal is bracketed for a URL.
 *
 * @example
 * ```ts
 * dialHost("0.0.0.0"); // "127.0.0.1"
 * dialHost("::1");     // "[::1]"
 * ```
 */
export function dialHost(host: string): string {
  if (host === "0.0.0.0") return "127.0.0.1";
  if (host === "::") return "::1";
  return host.includes(":") ? `[${host}]` : host;
}
