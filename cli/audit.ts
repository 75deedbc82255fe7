/**
 * `unibus audit tail`: the last security events of a node's audit log
 * (lib/audit_log.ts), one per line, or the JSON lines as written.
 *
 * @module
 */

import { auditLogIn, readAuditTail } from "../lib/audit_log.ts";
import { isNotFound } from "../lib/platform/mod.ts";
import { type OptionTable, parseCommandArgs, renderHelp, UsageError } from "./args.ts";
import type { Command } from "./command.ts";

const OPTIONS: OptionTable = {
  "audit-log": { type: "string", valueName: "FILE", description: "the audit log to read" },
  "data-dir": {
    type: "string",
    valueName: "DIR",
    description: "read DIR/audit.log (serve's default)",
    defaultText: "./local_files",
  },
  lines: {
    type: "string",
    valueName: "N",
    description: "how many events, 1 to 100000",
    defaultText: "20",
  },
  event: {
    type: "string",
    valueName: "PREFIX",
    description: "only events whose name starts with PREFIX (login., room., user., …)",
  },
  json: { type: "boolean", description: "print the JSON lines as written" },
};

const HELP = renderHelp(
  "unibus audit tail [--audit-log FILE | --data-dir DIR] [--lines N] [--event PREFIX] [--json]",
  "Prints the last security events: logins admitted and denied, connections cut, users added " +
    "and revoked, rooms created, changed and deleted, refused requests and quotas.",
  OPTIONS,
);

const SHOWN_APART = new Set(["ts", "level", "component", "msg", "audit", "event"]);

/**
 * One event as `audit tail` prints it: time, event name, then its fields.
 *
 * @example
 * ```ts
 * renderEvent({ ts: "2026-12-05T10:00:00Z", event: "login.denied", reason: "unknown user" });
 * // '2026-12-05T10:00:00Z  login.denied  reason="unknown user"'
 * ```
 */
export function renderEvent(e: Record<string, unknown>): string {
  const fields = Object.entries(e)
    .filter(([k, v]) => !SHOWN_APART.has(k) && v !== undefined && v !== null)
    .map(([k, v]) => `${k}=${typeof v === "string" && !/\s|"/.test(v) ? v : JSON.stringify(v)}`);
  return [String(e.ts ?? "?"), String(e.event ?? e.msg ?? "?"), ...fields].join("  ");
}

/** `unibus audit`. */
export const auditCommand: Command = {
  name: "audit",
  async run(argv) {
    const { values: v, positionals } = parseCommandArgs(argv, OPTIONS, { maxPositionals: 1 });
    if (v.help || positionals[0] === undefined) {
      console.log(HELP);
      return v.help ? 0 : 2;
    }
    if (positionals[0] !== "tail") {
      throw new UsageError(`unknown audit command "${positionals[0]}" (tail)`);
    }
    if (typeof v["audit-log"] === "string" && typeof v["data-dir"] === "string") {
      throw new UsageError("give --audit-log or --data-dir, not both");
    }
    const n = Number(v.lines ?? "20");
    if (!Number.isInteger(n) || n < 1 || n > 100_000) {
      throw new UsageError("--lines must be a whole number from 1 to 100000");
    }
    const path = typeof v["audit-log"] === "string"
      ? v["audit-log"]
      : auditLogIn(typeof v["data-dir"] === "string" ? v["data-dir"] : "./local_files");
    let events;
    try {
      // Filtered before the count: --lines 5 --event room. is the last five room events.
      events = await readAuditTail(path, Number.MAX_SAFE_INTEGER);
    } catch (err) {
      if (isNotFound(err)) throw new Error(`no audit log at ${path}`);
      throw err;
    }
    const prefix = typeof v.event === "string" ? v.event : "";
    const shown = events.filter((e) => e.audit === true && String(e.event ?? "").startsWith(prefix))
      .slice(-n);
    for (const e of shown) console.log(v.json ? JSON.stringify(e) : renderEvent(e));
    return 0;
  },
};
