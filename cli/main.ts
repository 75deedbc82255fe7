/**
 * Command dispatch, exit codes and the last-resort error printer: a user sees
 * one line on stderr and a non-zero status, never a stack trace.
 *
 * Exit statuses: 0 success, 1 a runtime failure, 2 a usage mistake.
 *
 * @module
 */

import { installConnectionResetGuard } from "../lib/nats/connection_reset_guard.ts";
import { installTlsEmptyWriteShim } from "../lib/nats/tls_empty_write.ts";
import { VERSION } from "../lib/version.ts";
import { UsageError } from "./args.ts";
import { blobCommand } from "./blob.ts";
import { clientcheckCommand } from "./clientcheck.ts";
import type { Command } from "./command.ts";
import { contextCommand } from "./context.ts";
import { identityCommand } from "./identity.ts";
import { mcpCommand } from "./mcp.ts";
import {
  historyCommand,
  listenCommand,
  requestCommand,
  respondCommand,
  sendCommand,
} from "./messages.ts";
import { migrateCommand } from "./migrate.ts";
import { roomCommand } from "./room.ts";
import { serveCommand } from "./serve.ts";
import { userCommand } from "./user.ts";

const versionCommand: Command = {
  name: "version",
  summary: "print the version",
  run() {
    console.log(`unibus ${VERSION}`);
    return Promise.resolve(0);
  },
};

const COMMANDS: Command[] = [
  serveCommand,
  userCommand,
  identityCommand,
  clientcheckCommand,
  migrateCommand,
  contextCommand,
  roomCommand,
  sendCommand,
  listenCommand,
  requestCommand,
  respondCommand,
  historyCommand,
  blobCommand,
  mcpCommand,
  versionCommand,
];

// The longest command name and two spaces: each summary starts in one column.
const NAME_WIDTH = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
const USAGE = [
  "usage: unibus <command> [options]",
  "",
  "commands:",
  ...COMMANDS.map((c) => `  ${c.name.padEnd(NAME_WIDTH)}${c.summary}`),
  "",
  "Run 'unibus <command> --help' for a command's options.",
].join("\n");

/**
 * Runs the CLI with `argv` (without the program name); resolves with the exit
 * status.
 *
 * @example
 * ```ts
 * Deno.exit(await runCli(["version"])); // prints "unibus 0.2.0"
 * ```
 */
export async function runCli(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    console.log(USAGE);
    return name === undefined ? 2 : 0;
  }
  if (name === "--version") return await runCli(["version"]);
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    console.error(`unibus: unknown command "${name}" (try 'unibus --help')`);
    return 2;
  }
  // Any NATS client in any command can meet a refused connection.
  installConnectionResetGuard();
  // …and any of them may drop a TLS connection on purpose (nats.js reconnect).
  installTlsEmptyWriteShim();
  try {
    return await command.run(rest);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    // Multi-line messages (nats-server's last output) keep their first line as
    // the summary; the rest is context the operator needs.
    console.error(`unibus ${name}: ${message}`);
    return err instanceof UsageError ? 2 : 1;
  }
}
