/**
 * `unibus blob put|get`: a file stored encrypted in a room's blob store.
 *
 * A blob is useless without its own key, which the server never sees; so
 * `put` prints a token holding the blob's id, key and size (send it in the
 * room, where it travels end-to-end encrypted), and `get` takes that token.
 * Anyone holding the token and the room's membership can read the blob:
 * treat it as the file itself.
 *
 * @module
 */

import type { BlobRef } from "../lib/client/client.ts";
import { type OptionTable, parseCommandArgs, renderHelp, UsageError } from "./args.ts";
import { openClient, TARGET_OPTIONS } from "./bus_target.ts";
import type { Command } from "./command.ts";

const OPTIONS: OptionTable = {
  ...TARGET_OPTIONS,
  out: { type: "string", valueName: "FILE", description: "get: where to write the blob" },
  json: { type: "boolean", description: "put: print the blob reference as JSON" },
};

const HELP = renderHelp(
  "unibus blob put ROOM FILE | unibus blob get ROOM TOKEN --out FILE",
  "Stores a file encrypted in ROOM's blob store and prints a TOKEN (id.key.size) that reads " +
    "it back; the token carries the blob's key: share it only inside the room.",
  OPTIONS,
);

/**
 * The token `put` prints: `<id>.<key, base64url>.<size>`.
 *
 * @example
 * ```ts
 * blobToken({ id: "ab", key: "AAE=", size: 3 }); // "ab.AAE.3"
 * ```
 */
export function blobToken(ref: BlobRef): string {
  const key = ref.key.replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
  return `${ref.id}.${key}.${ref.size}`;
}

/**
 * The blob reference in a token; a {@linkcode UsageError} when it is not one.
 *
 * @example
 * ```ts
 * parseBlobToken("ab.AAE.3"); // { id: "ab", key: "AAE=", size: 3 }
 * ```
 */
export function parseBlobToken(token: string): BlobRef {
  const m = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.(\d{1,15})$/.exec(token);
  if (!m) throw new UsageError("not a blob token (id.key.size, as 'unibus blob put' prints)");
  const b64 = m[2].replaceAll("-", "+").replaceAll("_", "/");
  return { id: m[1], key: b64 + "=".repeat((4 - b64.length % 4) % 4), size: Number(m[3]) };
}

/** `unibus blob`. */
export const blobCommand: Command = {
  name: "blob",
  async run(argv) {
    const { values: v, positionals } = parseCommandArgs(argv, OPTIONS, { maxPositionals: 3 });
    const [verb, room, arg] = positionals;
    if (v.help || verb === undefined) {
      console.log(HELP);
      return v.help ? 0 : 2;
    }
    if (verb !== "put" && verb !== "get") {
      throw new UsageError(`unknown blob command "${verb}" (put or get)`);
    }
    if (!room || !arg) {
      throw new UsageError(`blob ${verb} needs a ROOM and a ${verb === "put" ? "FILE" : "TOKEN"}`);
    }
    const out = typeof v.out === "string" ? v.out : undefined;
    if (verb === "get" && !out) throw new UsageError("blob get needs --out FILE");
    const ref = verb === "get" ? parseBlobToken(arg) : null;
    const bytes = verb === "put" ? await Deno.readFile(arg) : null;
    const client = await openClient(v);
    try {
      if (bytes) {
        const blob = await client.putBlob(room, bytes);
        console.log(v.json ? JSON.stringify({ ...blob, token: blobToken(blob) }) : blobToken(blob));
      } else {
        const data = await client.getBlob(room, ref!);
        await Deno.writeFile(out!, data, { mode: 0o600 });
        console.error(`wrote ${data.length} bytes to ${out}`);
      }
      return 0;
    } finally {
      await client.close();
    }
  },
};
