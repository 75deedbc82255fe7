/**
 * Which nats-server executable `serve` starts.
 *
 * @module
 */

/** Where the binary was found, for the start-up log. */
export interface ResolvedBinary {
  path: string;
  source: "flag" | "env" | "embedded" | "project" | "path";
}

/** Thrown when no nats-server can be found; the message says how to get one. */
export class NatsBinaryNotFoundError extends Error {
  override name = "NatsBinaryNotFoundError";
}

const PROJECT_COPY = new URL("../../.tools/nats-server/nats-server", import.meta.url);

/**
 * Where `scripts/build` puts the pinned nats-server inside the artifact: beside
 * the application sources, with its SHA-256 in a sibling file. In a source
 * checkout neither exists and the lookup falls through to `.tools/`.
 */
const EMBEDDED_COPY = new URL("../../.embedded/nats-server", import.meta.url);
const EMBEDDED_SHA256 = new URL("../../.embedded/nats-server.sha256", import.meta.url);

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
 * The artifact's embedded copy (see {@link resolveEmbeddedNatsServer}) sits
 * between the env and the project copy.
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
  const embedded = await resolveEmbeddedNatsServer({
    binary: fileUrlPath(EMBEDDED_COPY),
    sha256File: fileUrlPath(EMBEDDED_SHA256),
    cacheBase: cacheBase(options.env),
  });
  if (embedded) return { path: embedded, source: "embedded" };
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

function fileUrlPath(url: URL): string | null {
  return url.protocol === "file:" ? decodeURIComponent(url.pathname) : null;
}

/** `${XDG_CACHE_HOME:-$HOME/.cache}/unibus`, or null when neither is set. */
function cacheBase(env: Record<string, string | undefined>): string | null {
  if (env.XDG_CACHE_HOME) return `${env.XDG_CACHE_HOME}/unibus`;
  if (env.HOME) return `${env.HOME}/.cache/unibus`;
  return null;
}

async function sha256Hex(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The nats-server embedded in a built artifact, checked against its pinned
 * SHA-256 every time `serve` resolves it; null when this is not an artifact
 * (no checksum file beside the sources).
 *
 * Two layouts: the self-extracting artifact unpacks it as a real executable
 * file, used in place; `deno compile` keeps it inside the binary's read-only
 * virtual file system, where it cannot be executed, so it is copied once into
 * `<cacheBase>/<sha256 prefix>/` (0700, written to a temporary name and renamed
 * so two starting copies never run a half-written file).
 *
 * Why check every time: the unpacked copy lives in the user's cache directory,
 * which outlives the artifact. A copy altered there (or damaged on disk) would
 * otherwise run as the data plane with the callout's trust; a mismatch is an
 * error, never a silent fall-through to some other nats-server.
 *
 * @example
 * ```ts
 * const path = await resolveEmbeddedNatsServer({
 *   binary: "/opt/app/.embedded/nats-server",
 *   sha256File: "/opt/app/.embedded/nats-server.sha256",
 *   cacheBase: "/home/me/.cache/unibus",
 * });
 * ```
 */
export async function resolveEmbeddedNatsServer(
  options: { binary: string | null; sha256File: string | null; cacheBase: string | null },
): Promise<string | null> {
  if (!options.binary || !options.sha256File) return null;
  let expected: string;
  try {
    expected = (await Deno.readTextFile(options.sha256File)).trim().split(/\s+/)[0].toLowerCase();
  } catch {
    return null;
  }
  if (!/^[0-9a-f]{64}$/.test(expected)) {
    throw new NatsBinaryNotFoundError(
      `embedded nats-server checksum file ${options.sha256File} is malformed; rebuild the artifact`,
    );
  }
  const verify = async (path: string, what: string) => {
    const got = await sha256Hex(path);
    if (got !== expected) {
      throw new NatsBinaryNotFoundError(
        `${what} ${path} does not match its pinned SHA-256 (altered or damaged); ` +
          `delete it and start again, or pass --nats-server-bin`,
      );
    }
  };
  if (await isExecutableFile(options.binary)) {
    await verify(options.binary, "embedded nats-server");
    return options.binary;
  }
  // Inside `deno compile`'s virtual file system: readable, not executable.
  try {
    await Deno.stat(options.binary);
  } catch {
    return null;
  }
  if (!options.cacheBase) {
    throw new NatsBinaryNotFoundError(
      "neither XDG_CACHE_HOME nor HOME is set, so the embedded nats-server cannot be " +
        "extracted; set one, or pass --nats-server-bin",
    );
  }
  const dir = `${options.cacheBase}/nats-server-${expected.slice(0, 16)}`;
  const target = `${dir}/nats-server`;
  // A copy already in the cache is checked as it is; a new one is checked
  // before it is moved into place (once: hashing it again after the rename
  // read the whole binary a second time on every first start).
  if (await isExecutableFile(target)) {
    await verify(target, "extracted nats-server");
    return target;
  }
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  await Deno.chmod(dir, 0o700);
  const tmp = await Deno.makeTempFile({ dir, prefix: ".nats-server." });
  try {
    await Deno.writeFile(tmp, await Deno.readFile(options.binary), { mode: 0o700 });
    await Deno.chmod(tmp, 0o700);
    await verify(tmp, "extracted nats-server");
    await Deno.rename(tmp, target);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  return target;
}
