/**
 * Which nats-server executable `serve` starts.
 *
 * @module
 */

/** Where the binary was found, for the start-up log. */
export interface ResolvedBinary {
  path: string;
  source: "flag" | "env" | "project" | "path";
}

/** Thrown when no nats-server can be found; the message says how to get one. */
export class NatsBinaryNotFoundError extends Error {
  override name = "NatsBinaryNotFoundError";
}

const PROJECT_COPY = new URL("../../.tools/nats-server/nats-server", import.meta.url);

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    const st = await Deno.stat(path);
    return st.isFile && st.mode !== null && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

async function findOnPath(name: string, pathEnv: string | undefined): Promise<string | null> {
  for (const dir of (pathEnv ?? "").split(":")) {
    if (dir && await isExecutableFile(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return null;
}

/**
 * Resolves the nats-server binary in the documented order: `--nats-server-bin`,
 * `UNIBUS_NATS_SERVER`, the project's fetched copy (`.tools/`, filled by
 * `scripts/setup`), then `PATH`. An explicit choice that does not exist is an
 * error rather than a silent fall-through to another binary.
 *
 * (The compiled binary's embedded copy, which sits between the env and the
 * project copy in DESIGN.md, arrives with the deploy issue.)
 *
 * @example
 * ```ts
 * const bin = await resolveNatsServerBin({ flag: undefined, env: Deno.env.toObject() });
 * console.log(bin.path, bin.source);
 * ```
 */
export async function resolveNatsServerBin(
  options: { flag?: string; env: Record<string, string | undefined> },
): Promise<ResolvedBinary> {
  if (options.flag) {
    if (await isExecutableFile(options.flag)) return { path: options.flag, source: "flag" };
    throw new NatsBinaryNotFoundError(
      `--nats-server-bin ${options.flag} is not an executable file`,
    );
  }
  const fromEnv = options.env.UNIBUS_NATS_SERVER;
  if (fromEnv) {
    if (await isExecutableFile(fromEnv)) return { path: fromEnv, source: "env" };
    throw new NatsBinaryNotFoundError(`UNIBUS_NATS_SERVER=${fromEnv} is not an executable file`);
  }
  if (PROJECT_COPY.protocol === "file:") {
    const project = decodeURIComponent(PROJECT_COPY.pathname);
    if (await isExecutableFile(project)) return { path: project, source: "project" };
  }
  const onPath = await findOnPath("nats-server", options.env.PATH);
  if (onPath) return { path: onPath, source: "path" };
  throw new NatsBinaryNotFoundError(
    "nats-server not found: run scripts/setup nats-server, pass --nats-server-bin PATH, " +
      "set UNIBUS_NATS_SERVER, or use an external NATS with --nats-url",
  );
}
