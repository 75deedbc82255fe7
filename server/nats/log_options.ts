/**
 * How loud nats-server is, and whether its monitoring endpoint is open, from
 * the two operator toggles UNIBUS_NATS_MONITOR and UNIBUS_NATS_DEBUG.
 *
 * The toggles are separate on purpose: the monitoring endpoint is
 * wanted in production for a metrics scraper, but nats-server's debug log
 * writes routes, RAFT chatter and room subjects in clear to journald. Tying the
 * endpoint to the debug log regressed the hardened posture, so MONITOR opens
 * the endpoint and keeps the log quiet; DEBUG still implies MONITOR because
 * whoever debugs wants /jsz and /routez too.
 *
 * @module
 */

/** What the two toggles resolve to. */
export interface NatsLogOptions {
  /** Forward only nats-server's warnings and errors to our log. */
  quiet: boolean;
  /** nats-server `debug: true`. */
  debug: boolean;
  /** nats-server `trace: true` (protocol lines; UNIBUS_NATS_DEBUG=2 only). */
  trace: boolean;
  /** Open the monitoring endpoint on 127.0.0.1 (never another address: it has no auth). */
  monitor: boolean;
}

/**
 * Resolves the toggles. `debugEnv` is UNIBUS_NATS_DEBUG ("1" debug, "2" debug
 * and trace), `monitorEnv` is UNIBUS_NATS_MONITOR ("1" opens the endpoint).
 * Anything else, including unset, means off.
 *
 * @example
 * ```ts
 * natsLogOptions(undefined, "1"); // { quiet: true, debug: false, trace: false, monitor: true }
 * natsLogOptions("1", undefined); // { quiet: false, debug: true, trace: false, monitor: true }
 * ```
 */
export function natsLogOptions(
  debugEnv: string | undefined,
  monitorEnv: string | undefined,
): NatsLogOptions {
  const debug = debugEnv === "1" || debugEnv === "2";
  const trace = debugEnv === "2";
  const monitor = monitorEnv === "1" || debug;
  return { quiet: !debug, debug, trace, monitor };
}

/** The monitoring endpoint's fixed, loopback-only address. */
export const NATS_MONITOR_HOST = "127.0.0.1";
/** nats-server's customary monitoring port. */
export const NATS_MONITOR_PORT = 8222;

/**
 * The monitoring endpoint's port from UNIBUS_NATS_MONITOR_PORT: unset or
 * empty means {@linkcode NATS_MONITOR_PORT}. Two nodes (or a node and a test)
 * on one machine would otherwise fight over 8222. Anything but a decimal
 * port is refused rather than read as the default: an operator who set it
 * would look for the endpoint in the wrong place.
 *
 * @example
 * ```ts
 * natsMonitorPort(undefined); // 8222
 * natsMonitorPort("18222"); // 18222
 * ```
 */
export function natsMonitorPort(env: string | undefined): number {
  if (env === undefined || env === "") return NATS_MONITOR_PORT;
  const port = /^[1-9][0-9]{0,4}$/.test(env) ? Number(env) : 0;
  if (port < 1 || port > 65535) {
    throw new RangeError(`UNIBUS_NATS_MONITOR_PORT must be a port (1-65535), not "${env}"`);
  }
  return port;
}
