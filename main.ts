/**
 * The `unibus` command: parses the command name and hands the rest of argv to
 * the command's module in cli/. Nothing else lives here.
 *
 * @module
 */

import { runCli } from "./cli/main.ts";

if (import.meta.main) {
  Deno.exit(await runCli(Deno.args));
}
