/**
 * Private files: written whole, mode 0600, before anything moves them into
 * place (identity files, the client's receive state).
 *
 * @module
 */

import { randomBytes } from "node:crypto";
import { open } from "node:fs/promises";
import process from "node:process";
import { basename, dirname, join } from "node:path";

/**
 * A fresh temporary name next to `path` (same directory, so a rename or link
 * into place stays on one filesystem), hidden and random so that concurrent
 * writers never share one.
 *
 * @example
 * ```ts
 * privateTempPath("/home/ada/ada.id.json"); // "/home/ada/.ada.id.json.3f9c…e1.tmp"
 * ```
 */
export function privateTempPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(8).toString("hex")}.tmp`);
}

/**
 * Creates `tmp` (it must not exist) with mode 0600, writes all of `data` and
 * syncs it to disk; the caller then renames or links it into place, so a
 * crash never leaves a half-written file under the real name.
 *
 * @example
 * ```ts
 * const tmp = privateTempPath(`${dir}/state`);
 * await writePrivateTemp(tmp, bytes);
 * await rename(tmp, `${dir}/state`); // node:fs/promises
 * ```
 */
export async function writePrivateTemp(tmp: string, data: Uint8Array): Promise<void> {
  // "wx": created here, never an existing file (or a link planted there).
  const f = await open(tmp, "wx", 0o600);
  try {
    // The umask can only narrow the mode, but an explicit chmod also covers
    // filesystems that ignore the create mode. On the handle, not the path:
    // whatever is at the path by now, it is this file that gets the mode.
    if (process.platform !== "win32") await f.chmod(0o600);
    await f.writeFile(data);
    await f.sync();
  } finally {
    await f.close();
  }
}
