/**
 * `unibus context save|ls|show|select|rm`: the named targets of the client
 * commands (cli/contexts.ts keeps them).
 *
 * @module
 */

import { type OptionTable, parseCommandArgs, renderHelp, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import {
  configDir,
  csv,
  listContexts,
  loadContext,
  removeContext,
  saveContext,
  selectContext,
  selectedContext,
} from "./contexts.ts";

const SAVE_OPTIONS: OptionTable = {
  "identity-file": {
    type: "string",
    valueName: "PATH",
    description: "identity file (made by unibus identity new); required",
  },
  "nats-seeds": {
    type: "string",
    valueName: "URL,URL",
    description: "NATS URLs of the nodes; required",
  },
  "ctrl-seeds": {
    type: "string",
    valueName: "URL,URL",
    description: "control-plane URLs of the nodes; required",
  },
  ca: { type: "string", valueName: "PATH", description: "CA (PEM) pinning TLS on both planes" },
  select: { type: "boolean", description: "make it the selected context" },
};

const JSON_OPTION: OptionTable = { json: { type: "boolean", description: "print JSON" } };

const HELP = [
  "usage: unibus context <save|ls|show|select|rm> [NAME] [options]",
  "",
  "Named targets for the client commands (room, send, listen, request, respond,",
  "history, blob, mcp): an identity file, seeds and a CA. Stored as paths, never",
  "key material, 0600, in $XDG_CONFIG_HOME/unibus/context/ (~/.config/unibus).",
  "",
  "  save NAME --identity-file F --nats-seeds URL,… --ctrl-seeds URL,… [--ca F] [--select]",
  "  ls [--json]          the contexts, the selected one marked *",
  "  show NAME [--json]   one context",
  "  select NAME          the context used when none is named",
  "  rm NAME              forget it (the identity file stays)",
].join("\n");

async function save(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseCommandArgs(argv, SAVE_OPTIONS, { maxPositionals: 1 });
  if (v.help) {
    console.log(renderHelp("unibus context save NAME [options]", "Saves a context.", SAVE_OPTIONS));
    return 0;
  }
  const name = positionals[0];
  if (!name) throw new UsageError("context save needs a NAME");
  const need = (k: string) => {
    const x = v[k];
    if (typeof x !== "string" || x === "") throw new UsageError(`--${k} is required`);
    return x;
  };
  const identityFile = need("identity-file");
  const target = {
    identityFile,
    natsSeeds: csv(need("nats-seeds")),
    ctrlSeeds: csv(need("ctrl-seeds")),
    ca: typeof v.ca === "string" ? v.ca : null,
  };
  try {
    await Deno.stat(identityFile);
  } catch {
    throw new UsageError(`--identity-file ${identityFile}: no such file`);
  }
  const path = await saveContext(name, target);
  if (v.select) await selectContext(name);
  console.log(`saved context "${name}" (${path})${v.select ? ", selected" : ""}`);
  return 0;
}

async function ls(argv: string[]): Promise<number> {
  const { values: v } = parseCommandArgs(argv, JSON_OPTION, { maxPositionals: 0 });
  const [names, selected] = await Promise.all([listContexts(), selectedContext()]);
  if (v.json) {
    console.log(JSON.stringify(names.map((name) => ({ name, selected: name === selected }))));
  } else if (names.length === 0) {
    console.log(`no contexts (in ${configDir()}/context)`);
  } else {
    for (const n of names) console.log(`${n === selected ? "*" : " "} ${n}`);
  }
  return 0;
}

async function show(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseCommandArgs(argv, JSON_OPTION, { maxPositionals: 1 });
  const name = positionals[0];
  if (!name) throw new UsageError("context show needs a NAME");
  const t = await loadContext(name);
  const selected = (await selectedContext()) === name;
  if (v.json) {
    console.log(JSON.stringify({
      name,
      selected,
      identity_file: t.identityFile,
      nats_seeds: t.natsSeeds,
      ctrl_seeds: t.ctrlSeeds,
      ca: t.ca,
    }));
  } else {
    console.log(
      [
        `context ${name}${selected ? " (selected)" : ""}`,
        `  identity file  ${t.identityFile}`,
        `  NATS seeds     ${t.natsSeeds.join(", ")}`,
        `  control plane  ${t.ctrlSeeds.join(", ")}`,
        `  CA             ${t.ca ?? "(none: plain connections)"}`,
      ].join("\n"),
    );
  }
  return 0;
}

async function named(argv: string[], verb: string, act: (name: string) => Promise<void>) {
  const { positionals } = parseCommandArgs(argv, {}, { maxPositionals: 1 });
  const name = positionals[0];
  if (!name) throw new UsageError(`context ${verb} needs a NAME`);
  await act(name);
  return name;
}

/** `unibus context`. */
export const contextCommand: Command = {
  name: "context",
  async run(argv) {
    const [verb, ...rest] = argv;
    switch (verb) {
      case "save":
        return await save(rest);
      case "ls":
      case "list":
        return await ls(rest);
      case "show":
        return await show(rest);
      case "select":
        console.log(`selected context "${await named(rest, "select", selectContext)}"`);
        return 0;
      case "rm":
        console.log(`removed context "${await named(rest, "rm", removeContext)}"`);
        return 0;
      case undefined:
      case "--help":
      case "-h":
      case "help":
        console.log(HELP);
        return verb === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown context command "${verb}" (try 'unibus context --help')`);
    }
  },
};
