/**
 * Command dispatch, exit codes and the last-resort error printer: a user sees
 * one line on stderr and a non-zero status, never a stack trace.
 *
 * Exit statuses: 0 success, 1 a runtime failure, 2 a usage mistake.
 *
 * @module
 */

import { createLogger } from "../lib/log.ts";
import { installConnectionResetGuard } from "../lib/nats/connection_reset_guard.ts";
import { VERSION } from "../lib/version.ts";
import { UsageError } from "./args.ts";
import { parseServeArgs, SERVE_HELP } from "./serve.ts";

const USAGE = `usage: unibus <command> [options]

commands:
  serve      run the control plane and the data plane
  version    print the version

Run 'unibus <command> --help' for a command's options.`;

/** One command: its name in argv and what it does with the rest. */
interface Command {
  name: string;
  run(argv: string[]): Promise<number>;
}

const COMMANDS: Command[] = [
  {
    name: "serve",
    async run(argv) {
      const opts = parseServeArgs(argv);
      if (opts.help) {
        console.log(SERVE_HELP);
        return 0;
      }
      const log = createLogger("serve", {
        level: Deno.env.get("UNIBUS_LOG_LEVEL") === "debug" ? "debug" : "info",
      });
      installConnectionResetGuard((err) =>
        log.debug("swallowed a late connection reset", { error: err })
      );
      const { runServe } = await import("../server/serve.ts");
      return await runServe(opts, log);
    },
  },
  {
    name: "version",
    run() {
      console.log(`unibus ${VERSION}`);
      return Promise.resolve(0);
    },
  },
];

/**
 * Runs the CLI with `argv` (without the program name); resolves with the exit
 * status.
 *
 * @example
 * ```ts
 * Deno.exit(await runCli(["version"])); // prints "unibus 0.1.0"
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
