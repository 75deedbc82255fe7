/**
 * The audit log file: security events as JSON lines (the same lines serve
 * writes to stdout with `"audit": true`), appended to a file only its owner
 * reads, so that who added whom, who was refused and who was cut can be
 * read back (`unibus audit tail`) after the journal has rotated.
 *
 * @module
 */

import { closeSync, constants, fchmodSync, fstatSync, openSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import type { LogSink } from "./log.ts";

const encoder = new TextEncoder();

/**
 * The audit log in a data directory (serve's default, and where `user add`
 * on that directory's SQLite file writes).
 *
 * @example
 * ```ts
 * auditLogIn("./local_files"); // "./local_files/audit.log"
 * ```
 */
export function auditLogIn(dataDir: string): string {
  return `${dataDir.replace(/\/+$/, "")}/audit.log`;
}

/**
 * Opens `path` for appending (created 0600, its directory 0700 if missing;
 * an existing file is narrowed to 0600) and returns a sink writing one line
 * per call.
 *
 * @example
 * ```ts
 * const audit = await openAuditLog("./local_files/audit.log");
 * const log = createLogger("serve", { auditSink: audit.sink });
 * audit.close();
 * ```
 */
export async function openAuditLog(path: string): Promise<{ sink: LogSink; close(): void }> {
  await Deno.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  // O_APPEND: each line lands whole at the end, whoever else appends.
  // O_NOFOLLOW, and judged on the handle: whoever can write the directory
  // could plant a link at this name (`user add` may run as root on a --db
  // beside which anyone writes), and an append and chmod through it would
  // land on the link's target, /etc/shadow for one.
  const fd = openSync(
    path,
    constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW |
      constants.O_NONBLOCK,
    0o600,
  );
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`${path} is not a regular file`);
    // A second name (a hard link planted beside it) would make this another file too.
    if (st.nlink !== 1) throw new Error(`${path} has ${st.nlink} links; an audit log has one`);
    // An existing file keeps its mode on open: narrowed here, on the handle.
    fchmodSync(fd, 0o600);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  return {
    sink: (line) => void writeSync(fd, encoder.encode(line + "\n")),
    close: () => closeSync(fd),
  };
}

/**
 * Appends one audit line (`event`, `msg` and `fields`, marked `"audit": true`)
 * to `path`: what an offline command (`unibus user add` on the SQLite file)
 * writes, since no serve sees it happen.
 *
 * @example
 * ```ts
 * await appendAudit("./local_files/audit.log", "user.add", "user added", { signPub });
 * ```
 */
export async function appendAudit(
  path: string,
  event: string,
  msg: string,
  fields: Record<string, unknown>,
): Promise<void> {
  const log = await openAuditLog(path);
  try {
    log.sink(JSON.stringify({
      ts: new Date().toISOString(),
      level: "info",
      component: "cli",
      msg,
      audit: true,
      event,
      ...fields,
    }));
  } finally {
    log.close();
  }
}

/**
 * The last `n` audit lines of `path`, parsed (lines that are not JSON
 * objects are skipped), reading at most the last `maxBytes` of the file.
 *
 * @example
 * ```ts
 * for (const e of await readAuditTail("./local_files/audit.log", 20)) console.log(e.event);
 * ```
 */
export async function readAuditTail(
  path: string,
  n: number,
  maxBytes = 16 * 1024 * 1024,
): Promise<Array<Record<string, unknown>>> {
  const file = await Deno.open(path, { read: true });
  try {
    const size = (await file.stat()).size;
    const start = Math.max(0, size - maxBytes);
    await file.seek(start, Deno.SeekMode.Start);
    const buf = new Uint8Array(size - start);
    let off = 0;
    while (off < buf.length) {
      const got = await file.read(buf.subarray(off));
      if (got === null) break;
      off += got;
    }
    let lines = new TextDecoder().decode(buf.subarray(0, off)).split("\n");
    if (start > 0) lines = lines.slice(1); // the first may be cut
    const events: Array<Record<string, unknown>> = [];
    for (const line of lines) {
      if (!line.trim()) continue;
      try {
        const v = JSON.parse(line);
        if (v && typeof v === "object" && !Array.isArray(v)) events.push(v);
      } catch { /* not a line of ours: skipped */ }
    }
    return events.slice(-n);
  } finally {
    file.close();
  }
}
