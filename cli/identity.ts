/**
 * `unibus identity`: create (`new`) and inspect (`show`) identity files.
 * Output shows public keys only; the private halves stay in the 0600 file.
 *
 * @module
 */

import { handleViolation } from "../lib/grammar.ts";
import {
  generateIdentity,
  type Identity,
  loadIdentity,
  saveIdentity,
} from "../lib/identity/identity.ts";
import { type OptionTable, parseCommandArgs, renderHelp, UsageError } from "./args.ts";
import type { Command } from "./command.ts";

const NEW_OPTIONS: OptionTable = {
  out: { type: "string", valueName: "FILE", description: "identity file to create (mode 0600)" },
  handle: {
    type: "string",
    valueName: "H",
    description: "display name to record in the file (1-64 printable characters)",
  },
  json: { type: "boolean", description: "print the public keys as JSON" },
};

const SHOW_OPTIONS: OptionTable = {
  json: { type: "boolean", description: "print the public keys as JSON" },
};

/** Help of `unibus identity new`. */
export const IDENTITY_NEW_HELP: string = renderHelp(
  "unibus identity new --out FILE [--handle H] [--json]",
  "Creates an identity (Ed25519 signing key + X25519 key-exchange key) in FILE,\n" +
    "mode 0600, and prints its public keys. An existing FILE is never overwritten.",
  NEW_OPTIONS,
);

/** Help of `unibus identity show`. */
export const IDENTITY_SHOW_HELP: string = renderHelp(
  "unibus identity show FILE [--json]",
  "Prints the public keys of the identity in FILE (never its private keys).",
  SHOW_OPTIONS,
);

/** Help of `unibus identity`. */
export const IDENTITY_HELP: string = `usage: unibus identity <subcommand> [options]

Creates and inspects identity files (they hold private keys; keep them 0600).

subcommands:
  new     create an identity file
  show    print an identity file's public keys

Run 'unibus identity <subcommand> --help' for its options.`;

function render(id: Identity, json: boolean, file: string): string {
  const pub = id.toPublic();
  // One line, so scripts can read it with a line reader or jq.
  if (json) return JSON.stringify({ file, ...pub });
  const rows: Array<[string, string]> = [
    ["file", file],
    ["handle", pub.handle ?? "(none)"],
    ["sign_pub", pub.signPub],
    ["nkey", pub.nkey],
    ["kex_pub", pub.kexPub],
    ["kex_sig", pub.kexSig],
  ];
  return rows.map(([k, v]) => `${k.padEnd(9)}${v}`).join("\n");
}

async function runNew(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, NEW_OPTIONS, { maxPositionals: 0 });
  if (values.help) {
    console.log(IDENTITY_NEW_HELP);
    return 0;
  }
  const out = values.out;
  if (typeof out !== "string" || out.length === 0) throw new UsageError("--out FILE is required");
  const handle = values.handle;
  const bad = handle === undefined ? null : handleViolation(handle);
  if (bad) throw new UsageError(`--handle must be 1-64 printable characters: it ${bad.message}`);
  const id = generateIdentity(typeof handle === "string" ? handle : null);
  await saveIdentity(out, id);
  console.log(render(id, values.json === true, out));
  if (values.json !== true) {
    console.log(
      `\nregister it with:\n  unibus user add --handle ${shellWord(id.handle ?? "NAME")}` +
        ` --sign-pub ${id.signPubHex} --kex-pub ${id.kexPubHex} --kex-sig ${id.kexSigHex}`,
    );
  }
  return 0;
}

async function runShow(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, SHOW_OPTIONS, { maxPositionals: 1 });
  if (values.help) {
    console.log(IDENTITY_SHOW_HELP);
    return 0;
  }
  const file = positionals[0];
  if (file === undefined) throw new UsageError("identity show needs a FILE");
  const id = await loadIdentity(file);
  console.log(render(id, values.json === true, file));
  return 0;
}

// Quotes a handle for the suggested command line only when the shell needs it.
function shellWord(s: string): string {
  return /^[A-Za-z0-9_.@+=:,/-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * `unibus identity new|show`.
 *
 * @example
 * ```ts
 * import { identityCommand } from "./identity.ts";
 * await identityCommand.run(["new", "--out", "ada.id.json", "--handle", "ada"]);
 * ```
 */
export const identityCommand: Command = {
  name: "identity",
  async run(argv) {
    const [sub, ...rest] = argv;
    switch (sub) {
      case "new":
        return await runNew(rest);
      case "show":
        return await runShow(rest);
      case "--help":
      case "-h":
      case "help":
        console.log(IDENTITY_HELP);
        return 0;
      case undefined:
        throw new UsageError("missing subcommand: new or show (try 'unibus identity --help')");
      default:
        throw new UsageError(`unknown subcommand "${sub}" (try 'unibus identity --help')`);
    }
  },
};
