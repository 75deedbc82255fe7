/**
 * Reading a small file a user named (an identity, a receive state, a CA, a
 * secret) without letting the path decide what kind of thing is read.
 *
 * A plain open of a FIFO blocks until something writes to it, so a path that
 * is (or is swapped for) a FIFO would hang the process; a device or a
 * directory would be read as garbage or fail late. The file is opened
 * non-blocking and judged on the open handle (`fstat`), so the file judged is
 * the file read, whatever the path points to by then; only a regular file
 * is read, and only up to a bound.
 *
 * @module
 */

import { constants, promises as fsp } from "node:fs";
import { notFoundError } from "../platform/mod.ts";

/** The path names something other than a regular file (a FIFO, a directory, a device). */
export class NotRegularFileError extends Error {
  override name = "NotRegularFileError";
  constructor(readonly path: string, readonly kind: string) {
    super(`${path} is not a regular file (it is a ${kind})`);
  }
}

/** The file is larger than the caller's bound. */
export class FileTooLargeError extends Error {
  override name = "FileTooLargeError";
  constructor(readonly path: string, readonly maxBytes: number) {
    super(`${path} is larger than ${maxBytes} bytes`);
  }
}

/** A regular file's bytes and mode, read from one open handle. */
export interface RegularFile {
  bytes: Uint8Array;
  /** Permission bits (and type bits) as `fstat` reported them. */
  mode: number;
}

function kindOf(st: { isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean }): string {
  if (st.isDirectory()) return "directory";
  if (st.isFIFO()) return "FIFO";
  if (st.isSocket()) return "socket";
  return "device or special file";
}

/**
 * Reads the regular file at `path`, at most `maxBytes`. A missing file throws
 * `Deno.errors.NotFound`; a FIFO, directory, socket or device throws
 * {@linkcode NotRegularFileError} at once (never blocks); a larger file
 * throws {@linkcode FileTooLargeError}. A symlink is followed, and judged by
 * what it points to.
 *
 * @example
 * ```ts
 * const { bytes, mode } = await readRegularFile("./ada.id.json", 64 * 1024);
 * ```
 */
export async function readRegularFile(path: string, maxBytes: number): Promise<RegularFile> {
  let fh: Awaited<ReturnType<typeof fsp.open>>;
  try {
    fh = await fsp.open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") {
      throw notFoundError(`${path}: no such file`);
    }
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new NotRegularFileError(path, kindOf(st));
    if (st.size > maxBytes) throw new FileTooLargeError(path, maxBytes);
    // One byte more than the size: a file that grew meanwhile is caught.
    const buf = new Uint8Array(st.size + 1);
    let n = 0;
    while (n < buf.length) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    if (n > st.size || n > maxBytes) throw new FileTooLargeError(path, maxBytes);
    return { bytes: buf.subarray(0, n), mode: st.mode };
  } finally {
    await fh.close();
  }
}
