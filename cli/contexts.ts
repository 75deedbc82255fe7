/**
 * Contexts: named sets of "who am I and where is the bus" (an identity file,
 * NATS and control-plane seeds, a CA), as `nats context` keeps them, so that
 * a shell or an agent host types `--context ops` instead of four flags.
 *
 * One JSON file per context in `$XDG_CONFIG_HOME/unibus/context/` (default
 * `~/.config/unibus/context/`), 0600 in a 0700 directory; the selected name
 * in `$XDG_CONFIG_HOME/unibus/context.txt`. A context holds paths, never key
 * material: the identity file stays where its owner keeps it (0600), and a
 * context file that leaked would name it, not contain it.
 *
 * @module
 */

import { UsageError } from "./args.ts";

/** Where the client commands connect, and as whom. */
export interface Target {
  identityFile: string;
  natsSeeds: string[];
  ctrlSeeds: string[];
  ca: string | null;
}

/** A context as stored (snake_case, as `nats` stores its own). */
interface ContextFile {
  identity_file: string;
  nats_seeds: string[];
  ctrl_seeds: string[];
  ca: string | null;
}

/** A context name: a file name that cannot climb out of the directory. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/**
 * The configuration directory: `$XDG_CONFIG_HOME/unibus`, else `~/.config/unibus`.
 *
 * @example
 * ```ts
 * configDir(); // "/home/ada/.config/unibus"
 * ```
 */
export function configDir(): string {
  const xdg = Deno.env.get("XDG_CONFIG_HOME");
  if (xdg) return `${xdg}/unibus`;
  const home = Deno.env.get("HOME");
  if (!home) throw new Error("neither XDG_CONFIG_HOME nor HOME is set: no place for contexts");
  return `${home}/.config/unibus`;
}

function checkName(name: string): string {
  if (!NAME.test(name)) {
    throw new UsageError(
      `context name ${JSON.stringify(name)}: letters, digits, '_', '.', '-' (at most 64), ` +
        "starting with a letter or digit",
    );
  }
  return name;
}

function contextPath(name: string): string {
  return `${configDir()}/context/${checkName(name)}.json`;
}

/**
 * Comma-separated seeds, each checked: NATS seeds `nats://` or `tls://`
 * host:port, control-plane seeds `http(s)://`, and `https://` only when a CA
 * pins TLS (a pinned data plane with a plain control plane would send the
 * signed requests in the clear).
 *
 * @example
 * ```ts
 * checkSeeds(["nats://127.0.0.1:4250"], ["http://127.0.0.1:8470"], null);
 * ```
 */
export function checkSeeds(natsSeeds: string[], ctrlSeeds: string[], ca: string | null): void {
  if (natsSeeds.length === 0) throw new UsageError("--nats-seeds names no URL");
  checkCtrlSeeds(ctrlSeeds, ca);
  for (const u of natsSeeds) {
    if (!/^(nats|tls):\/\/[^/]+$/.test(u)) {
      throw new UsageError(`--nats-seeds: "${u}" is not a nats:// or tls:// URL`);
    }
  }
}

/**
 * The control-plane half of {@linkcode checkSeeds}, for commands that speak
 * only to the control plane (`unibus status`).
 *
 * @example
 * ```ts
 * checkCtrlSeeds(["https://n1:8470"], "ca.crt");
 * ```
 */
export function checkCtrlSeeds(ctrlSeeds: string[], ca: string | null): void {
  if (ctrlSeeds.length === 0) throw new UsageError("--ctrl-seeds names no URL");
  for (const u of ctrlSeeds) {
    if (!/^https?:\/\/[^\s]+$/.test(u)) {
      throw new UsageError(`--ctrl-seeds: "${u}" is not an http(s) URL`);
    }
    if (ca && !u.startsWith("https://")) {
      throw new UsageError(`--ctrl-seeds: "${u}" must be https:// when --ca is given`);
    }
  }
}

/**
 * Splits a comma-separated flag value into its non-empty items.
 *
 * @example
 * ```ts
 * csv("a, b,,c"); // ["a", "b", "c"]
 * ```
 */
export function csv(s: string): string[] {
  return s.split(",").map((x) => x.trim()).filter((x) => x !== "");
}

function absolute(path: string): string {
  return path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
}

/**
 * Saves `target` as context `name` (0600 file, 0700 directory); paths are
 * made absolute so that the context works from any directory.
 *
 * @example
 * ```ts
 * await saveContext("ada", { identityFile: "ada.id", natsSeeds: ["nats://127.0.0.1:4250"], ctrlSeeds: ["http://127.0.0.1:8470"], ca: null });
 * ```
 */
export async function saveContext(name: string, target: Target): Promise<string> {
  checkSeeds(target.natsSeeds, target.ctrlSeeds, target.ca);
  const path = contextPath(name);
  const dir = path.slice(0, path.lastIndexOf("/"));
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  await Deno.chmod(dir, 0o700);
  const file: ContextFile = {
    identity_file: absolute(target.identityFile),
    nats_seeds: target.natsSeeds,
    ctrl_seeds: target.ctrlSeeds,
    ca: target.ca === null ? null : absolute(target.ca),
  };
  // Written aside and renamed: a reader never sees half a context.
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(file, null, 2) + "\n", { mode: 0o600 });
  await Deno.chmod(tmp, 0o600);
  await Deno.rename(tmp, path);
  return path;
}

/**
 * Context `name`; a {@linkcode UsageError} naming it when there is none or it
 * does not parse.
 *
 * @example
 * ```ts
 * const t = await loadContext("ada");
 * ```
 */
export async function loadContext(name: string): Promise<Target> {
  const path = contextPath(name);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new UsageError(`no context "${name}" (unibus context ls lists them)`);
    }
    throw err;
  }
  let f: Partial<ContextFile>;
  try {
    f = JSON.parse(text);
  } catch {
    throw new Error(`context "${name}" (${path}) is not JSON`);
  }
  const strings = (x: unknown) => Array.isArray(x) && x.every((s) => typeof s === "string");
  if (
    typeof f.identity_file !== "string" || !strings(f.nats_seeds) || !strings(f.ctrl_seeds) ||
    (f.ca !== null && f.ca !== undefined && typeof f.ca !== "string")
  ) {
    throw new Error(
      `context "${name}" (${path}) lacks identity_file, nats_seeds or ctrl_seeds`,
    );
  }
  return {
    identityFile: f.identity_file,
    natsSeeds: f.nats_seeds!,
    ctrlSeeds: f.ctrl_seeds!,
    ca: f.ca ?? null,
  };
}

/**
 * Every saved context's name, sorted.
 *
 * @example
 * ```ts
 * await listContexts(); // ["ada", "bob"]
 * ```
 */
export async function listContexts(): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(`${configDir()}/context`)) {
      if (e.isFile && e.name.endsWith(".json")) names.push(e.name.slice(0, -5));
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return names.filter((n) => NAME.test(n)).sort();
}

/**
 * The selected context's name, or null.
 *
 * @example
 * ```ts
 * await selectedContext(); // "ada"
 * ```
 */
export async function selectedContext(): Promise<string | null> {
  try {
    const name = (await Deno.readTextFile(`${configDir()}/context.txt`)).trim();
    return name === "" ? null : name;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/**
 * Makes `name` (which must exist) the selected context.
 *
 * @example
 * ```ts
 * await selectContext("ada");
 * ```
 */
export async function selectContext(name: string): Promise<void> {
  await loadContext(name);
  await Deno.writeTextFile(`${configDir()}/context.txt`, `${name}\n`, { mode: 0o600 });
}

/**
 * Removes context `name`, and the selection if it named it.
 *
 * @example
 * ```ts
 * await removeContext("ada");
 * ```
 */
export async function removeContext(name: string): Promise<void> {
  try {
    await Deno.remove(contextPath(name));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new UsageError(`no context "${name}"`);
    throw err;
  }
  if (await selectedContext() === name) await Deno.remove(`${configDir()}/context.txt`);
}

/** What a client command was given: `--context`, and the flags that override it. */
export interface TargetFlags {
  context?: string;
  identityFile?: string;
  natsSeeds?: string;
  ctrlSeeds?: string;
  ca?: string;
}

/**
 * Where a client command connects: `--context`, else `UNIBUS_CONTEXT`, else
 * the selected context, else the explicit flags alone; explicit flags
 * override the context's values. Neither: a {@linkcode UsageError} saying
 * how to make a context.
 *
 * @example
 * ```ts
 * const t = await resolveTarget({ context: "ada" });
 * ```
 */
export async function resolveTarget(flags: TargetFlags): Promise<Target> {
  // An empty UNIBUS_CONTEXT is unset, as an empty flag would be.
  const name = flags.context || Deno.env.get("UNIBUS_CONTEXT") || await selectedContext();
  const base: Partial<Target> = name ? await loadContext(name) : {};
  const target = {
    identityFile: flags.identityFile ?? base.identityFile,
    natsSeeds: flags.natsSeeds !== undefined ? csv(flags.natsSeeds) : base.natsSeeds,
    ctrlSeeds: flags.ctrlSeeds !== undefined ? csv(flags.ctrlSeeds) : base.ctrlSeeds,
    ca: flags.ca ?? base.ca ?? null,
  };
  if (!target.identityFile || !target.natsSeeds || !target.ctrlSeeds) {
    throw new UsageError(
      "no context: save one with 'unibus context save NAME --identity-file F --nats-seeds URL " +
        "--ctrl-seeds URL --select', or give --identity-file, --nats-seeds and --ctrl-seeds",
    );
  }
  checkSeeds(target.natsSeeds, target.ctrlSeeds, target.ca);
  return target as Target;
}
