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
import type { Command } from "./command.ts";

const versionCommand: Command = {
  name: "version",
  run() {
    console.log(`unibus ${VERSION}`);
    return Promise.resolve(0);
  },
};

/**
 * Every command: its name, its one-line summary, and its module, loaded only
 * when the command runs, so that one command does not pay for the others'
 * libraries at start-up (the MCP SDK, the client, the server).
 */
const COMMANDS: Array<{ name: string; summary: string; load(): Promise<Command> }> = [
  {
    name: "serve",
    summary: "run the control plane and the data plane",
    load: async () => (await import("./serve.ts")).serveCommand,
  },
  {
    name: "user",
    summary: "administer the allowlist: add, list, revoke",
    load: async () => (await import("./user.ts")).userCommand,
  },
  {
    name: "identity",
    summary: "create (new) or inspect (show) an identity file",
    load: async () => (await import("./identity.ts")).identityCommand,
  },
  {
    name: "clientcheck",
    summary: "verify the bus end to end with a real identity (golden or loop)",
    load: async () => (await import("./clientcheck.ts")).clientcheckCommand,
  },
  {
    name: "migrate-to-kv",
    summary: "copy the SQLite control plane into a node's KV buckets",
    load: async () => (await import("./migrate.ts")).migrateCommand,
  },
  {
    name: "backup",
    summary: "write the control plane into one verified archive",
    load: async () => (await import("./backup.ts")).backupCommand,
  },
  {
    name: "restore",
    summary: "restore a backup archive into an empty control plane",
    load: async () => (await import("./restore.ts")).restoreCommand,
  },
  {
    name: "context",
    summary: "save, list, show, select and remove client contexts",
    load: async () => (await import("./context.ts")).contextCommand,
  },
  {
    name: "room",
    summary: "create, list, show and change rooms (as the identity in use)",
    load: async () => (await import("./room.ts")).roomCommand,
  },
  {
    name: "send",
    summary: "send a message (or each line of stdin) into a room",
    load: async () => (await import("./messages.ts")).sendCommand,
  },
  {
    name: "listen",
    summary: "print the messages of rooms as they arrive",
    load: async () => (await import("./messages.ts")).listenCommand,
  },
  {
    name: "request",
    summary: "send a request into a room and print the reply",
    load: async () => (await import("./messages.ts")).requestCommand,
  },
  {
    name: "respond",
    summary: "answer a room's requests with a command's output (or an echo)",
    load: async () => (await import("./messages.ts")).respondCommand,
  },
  {
    name: "history",
    summary: "print a persisted room's stored messages",
    load: async () => (await import("./messages.ts")).historyCommand,
  },
  {
    name: "blob",
    summary: "store a file encrypted in a room, or read one back",
    load: async () => (await import("./blob.ts")).blobCommand,
  },
  {
    name: "mcp",
    summary: "serve the bus to an LLM agent as MCP tools over stdio",
    load: async () => (await import("./mcp.ts")).mcpCommand,
  },
  {
    name: "audit",
    summary: "read the audit log: tail",
    load: async () => (await import("./audit.ts")).auditCommand,
  },
  {
    name: "status",
    summary: "the health of a node or a cluster (exit 1 when unhealthy)",
    load: async () => (await import("./status.ts")).statusCommand,
  },
  { name: "version", summary: "print the version", load: () => Promise.resolve(versionCommand) },
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
    return await (await command.load()).run(rest);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    // Multi-line messages (nats-server's last output) keep their first line as
    // the summary; the rest is context the operator needs.
    console.error(`unibus ${name}: ${message}`);
    return err instanceof UsageError ? 2 : 1;
  }
}
