/**
 * Argument parsing shared by every command: `node:util` parseArgs in strict
 * mode, with its errors turned into one-line usage errors (exit 2) and help
 * generated from the same option table that drives the parser.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** A command-line mistake: printed as one line, exit status 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** One option of a command, described once for the parser and the help. */
export interface OptionSpec {
  type: "string" | "boolean";
  description: string;
  /** Shown in help as `--name VALUE`. */
  valueName?: string;
  /** Shown in help; applied by the command, not the parser. */
  defaultText?: string;
}

/** The option table of a command. */
export type OptionTable = Record<string, OptionSpec>;

/** Parsed flags and positionals. */
export interface ParsedArgs {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/**
 * Parses `argv` against `table`. Flags may come before or after positionals
 * (`user revoke KEY --db PATH` must honour `--db`, as operators type it). `--help` is
 * always accepted.
 *
 * @example
 * ```ts
 * const { values } = parseCommandArgs(["--http-addr", "127.0.0.1:0"], {
 *   "http-addr": { type: "string", description: "control plane address" },
 * }, { maxPositionals: 0 });
 * values["http-addr"]; // "127.0.0.1:0"
 * ```
 */
export function parseCommandArgs(
  argv: string[],
  table: OptionTable,
  opts: { maxPositionals: number },
): ParsedArgs {
  const options: Record<string, { type: "string" | "boolean" }> = { help: { type: "boolean" } };
  for (const [name, spec] of Object.entries(table)) options[name] = { type: spec.type };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(describeParseError(err));
  }
  if (parsed.positionals.length > opts.maxPositionals) {
    const extra = parsed.positionals[opts.maxPositionals];
    throw new UsageError(`unexpected argument "${extra}"`);
  }
  return { values: parsed.values as ParsedArgs["values"], positionals: parsed.positionals };
}

function describeParseError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const msg = e.message ?? String(err);
  const opt = /'(-[^' ]+)/.exec(msg)?.[1];
  switch (e.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${opt ?? msg}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return msg.includes("argument missing")
        ? `${opt ?? "option"} needs a value`
        : `${opt ?? "option"} does not take a value`;
    default:
      return msg.split("\n")[0];
  }
}

/**
 * Help text for a command from its usage line and option table.
 *
 * @example
 * ```ts
 * console.log(renderHelp("unibus serve [options]", "Runs the bus.", table));
 * ```
 */
export function renderHelp(usage: string, summary: string, table: OptionTable): string {
  const rows = Object.entries(table).map(([name, spec]) => {
    const left = `--${name}${spec.type === "string" ? ` ${spec.valueName ?? "VALUE"}` : ""}`;
    const def = spec.defaultText ? ` (default: ${spec.defaultText})` : "";
    return [left, spec.description + def] as const;
  });
  const width = Math.max(...rows.map(([l]) => l.length), 6) + 2;
  return [
    `usage: ${usage}`,
    "",
    summary,
    "",
    "options:",
    ...rows.map(([l, r]) => `  ${l.padEnd(width)}${r}`),
    `  ${"--help".padEnd(width)}show this help`,
  ].join("\n");
}
