/**
 * Pid files in the data dir, so that a `serve` killed with SIGKILL does not
 * leave a nats-server holding the ports forever (the child outlives its
 * parent), and so that two `serve` processes never share one data dir.
 *
 * A pid is only trusted together with the process's command line: after a
 * reboot the number can belong to anything, and killing an unrelated process
 * because a stale file named it would be worse than the problem it solves.
 *
 * @module
 */

import type { Logger } from "../../lib/log.ts";

async function readPid(path: string): Promise<number | null> {
  try {
    const pid = Number((await Deno.readTextFile(path)).trim());
    return Number.isInteger(pid) && pid > 1 ? pid : null;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/** The NUL-separated argv of a live process, or null when it is gone. */
export async function processCommandLine(pid: number): Promise<string[] | null> {
  try {
    const raw = await Deno.readTextFile(`/proc/${pid}/cmdline`);
    return raw.split("\0").filter((a) => a !== "");
  } catch {
    return null;
  }
}

async function waitForExit(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await processCommandLine(pid) === null) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return await processCommandLine(pid) === null;
}

/**
 * Stops a nats-server left behind by an earlier `serve` on this data dir: the
 * pid in `pidFile` is acted on only if that process is a nats-server started
 * with `configPath`. SIGTERM first, SIGKILL after five seconds.
 *
 * @example
 * ```ts
 * await reapStaleNatsServer("local_files/nats-server.pid", "local_files/nats-server.conf", log);
 * ```
 */
export async function reapStaleNatsServer(
  pidFile: string,
  configPath: string,
  log: Logger,
): Promise<boolean> {
  const pid = await readPid(pidFile);
  if (pid === null) return false;
  const argv = await processCommandLine(pid);
  const ours = argv !== null && argv.some((a) => a.endsWith("nats-server")) &&
    argv.includes(configPath);
  if (!ours) {
    await Deno.remove(pidFile).catch(() => {});
    return false;
  }
  log.warn("stopping a nats-server left behind by an earlier serve", { pid });
  try {
    Deno.kill(pid, "SIGTERM");
  } catch { /* already gone */ }
  if (!await waitForExit(pid, 5000)) {
    log.warn("stale nats-server ignored SIGTERM; killing it", { pid });
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* already gone */ }
    await waitForExit(pid, 2000);
  }
  await Deno.remove(pidFile).catch(() => {});
  return true;
}

/** Thrown when another live `serve` owns the data dir. */
export class DataDirInUseError extends Error {
  override name = "DataDirInUseError";
}

/**
 * Claims the data dir for this process by writing its pid to `lockFile`. A
 * file naming a live `unibus serve` other than this one is refused; a file
 * naming a dead process is taken over.
 *
 * @example
 * ```ts
 * await claimDataDir("local_files/serve.pid");
 * ```
 */
export async function claimDataDir(lockFile: string): Promise<void> {
  const pid = await readPid(lockFile);
  if (pid !== null && pid !== Deno.pid) {
    const argv = await processCommandLine(pid);
    if (argv !== null && argv.includes("serve")) {
      throw new DataDirInUseError(
        `the data dir is in use by another unibus serve (pid ${pid}); stop it or use another --data-dir`,
      );
    }
  }
  await Deno.writeTextFile(lockFile, `${Deno.pid}\n`, { mode: 0o600 });
}

/**
 * Removes `lockFile` if it still names this process.
 *
 * @example
 * ```ts
 * await releaseDataDir("local_files/serve.pid");
 * ```
 */
export async function releaseDataDir(lockFile: string): Promise<void> {
  if (await readPid(lockFile) === Deno.pid) await Deno.remove(lockFile).catch(() => {});
}
