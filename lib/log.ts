/**
 * Structured logging: one JSON object per line on stdout, so journald and log
 * shippers can parse every line without guessing at a format.
 *
 * Secrets never reach a logger: callers pass public keys, subjects and error
 * messages, never key material, passwords or request bodies.
 *
 * @module
 */

/** Severity of a log line, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Extra key/value pairs carried on a log line. */
export type LogFields = Record<string, unknown>;

/** A logger bound to one component of the program. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /**
   * A security event (a login admitted or denied, a membership change, a
   * connection cut, a refusal): written whatever the level, marked
   * `"audit": true` with its `event` name so that journald can filter it,
   * and also to the audit sink when there is one. Never message contents
   * nor secrets: keys, ids, subjects, reasons.
   */
  audit(event: string, msg: string, fields?: LogFields): void;
  /** A logger for a sub-component that shares this one's sink and level. */
  child(component: string): Logger;
}

const ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Where log lines go; tests pass their own to capture lines. */
export type LogSink = (line: string) => void;

const encoder = new TextEncoder();
const stdoutSink: LogSink = (line) => {
  Deno.stdout.writeSync(encoder.encode(line + "\n"));
};

/**
 * How many `*.denied` audit lines may be written: a refused login or request
 * needs no key, so without a bound anyone who can reach the node could fill
 * its disk with audit lines. A token bucket (a burst of 100, then 20 a
 * second) shared by a logger and its children; what it drops is counted and
 * said on the next line it lets through (`suppressedBefore`). Events of
 * authenticated callers are never dropped.
 *
 * @example
 * ```ts
 * const budget = new DeniedBudget();
 * budget.admit("login.denied"); // 0: written, nothing dropped before it
 * ```
 */
export class DeniedBudget {
  #tokens: number;
  #at: number;
  #dropped = 0;

  constructor(
    readonly burst = 100,
    readonly perSecond = 20,
    readonly now: () => number = () => performance.now(),
  ) {
    this.#tokens = burst;
    this.#at = now();
  }

  /** null: drop this line; else how many were dropped before it. */
  admit(event: string): number | null {
    if (!event.endsWith(".denied")) return 0;
    const t = this.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((t - this.#at) / 1000) * this.perSecond);
    this.#at = t;
    if (this.#tokens < 1) {
      this.#dropped++;
      return null;
    }
    this.#tokens--;
    const dropped = this.#dropped;
    this.#dropped = 0;
    return dropped;
  }
}

/**
 * Creates a logger for `component` that writes lines at `level` and above.
 *
 * @example
 * ```ts
 * const log = createLogger("serve", { level: "info" });
 * log.info("listening", { addr: "127.0.0.1:8470" });
 * // {"ts":"…","level":"info","component":"serve","msg":"listening","addr":"127.0.0.1:8470"}
 * ```
 */
export function createLogger(
  component: string,
  options: { level?: LogLevel; sink?: LogSink; auditSink?: LogSink; denied?: DeniedBudget } = {},
): Logger {
  const level = options.level ?? "info";
  const denied = options.denied ?? new DeniedBudget();
  const sink = options.sink ?? stdoutSink;
  const line = (lvl: LogLevel, msg: string, fields?: LogFields): string => {
    const out: LogFields = { ts: new Date().toISOString(), level: lvl, component, msg };
    if (fields) {
      for (const [k, v] of Object.entries(fields)) {
        out[k] = v instanceof Error ? v.message : v;
      }
    }
    return JSON.stringify(out);
  };
  const write = (lvl: LogLevel, msg: string, fields?: LogFields) => {
    if (ORDER[lvl] < ORDER[level]) return;
    sink(line(lvl, msg, fields));
  };
  return {
    debug: (msg, fields) => write("debug", msg, fields),
    info: (msg, fields) => write("info", msg, fields),
    warn: (msg, fields) => write("warn", msg, fields),
    error: (msg, fields) => write("error", msg, fields),
    audit: (event, msg, fields) => {
      const suppressed = denied.admit(event);
      if (suppressed === null) return;
      const text = line("info", msg, {
        audit: true,
        event,
        ...fields,
        ...(suppressed > 0 ? { suppressedBefore: suppressed } : {}),
      });
      sink(text);
      options.auditSink?.(text);
    },
    child: (sub) => createLogger(`${component}.${sub}`, { ...options, level, sink, denied }),
  };
}
