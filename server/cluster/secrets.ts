/**
 * The two secrets every node of a cluster shares: the route secret (guards
 * the route port) and the auth callout issuer key (signs callout answers).
 * Both are provisioned as files, 0600, the same on every node; neither is
 * ever put in a process's argv or a log line.
 *
 * @module
 */

import { Codec } from "@nats-io/nkeys/lib/codec.js";
import { NativeNkeyPair, Prefix } from "../../lib/auth/nkey.ts";
import { privateTempPath, writePrivateTemp } from "../../lib/fs/private_file.ts";
import { readRegularFile, type RegularFile } from "../../lib/fs/read_regular.ts";
import { clusterPassProblem, type ClusterPassSource } from "./options.ts";

/** A secret file that is missing, unreadable, open to others, or malformed. */
export class SecretFileError extends Error {
  override name = "SecretFileError";
}

// Secrets are a few hundred bytes; the bound keeps a wrong path (a disk
// image, a device) from being read whole.
const MAX_SECRET_BYTES = 64 * 1024;

async function readPrivate(path: string, what: string): Promise<string> {
  let file: RegularFile;
  try {
    // Judged on the open handle, never blocking on a FIFO.
    file = await readRegularFile(path, MAX_SECRET_BYTES);
  } catch (err) {
    throw new SecretFileError(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
  // A secret readable by group or others is a secret shared with them: refuse
  // it rather than run with a key every local account can copy.
  if (Deno.build.os !== "windows" && (file.mode & 0o077) !== 0) {
    throw new SecretFileError(
      `${what} ${path} has mode 0${
        (file.mode & 0o777).toString(8)
      }, open to group or others; chmod 600 it`,
    );
  }
  return new TextDecoder().decode(file.bytes);
}

/**
 * The route secret from its source (file > environment > flag), checked.
 * `warning` is set when it came from argv, which `ps` and journald show.
 *
 * @example
 * ```ts
 * const { pass, warning } = await resolveClusterPass({ kind: "file", path: "/etc/unibus/route.pass" });
 * ```
 */
export async function resolveClusterPass(
  source: ClusterPassSource,
): Promise<{ pass: string; warning: string | null }> {
  if (source.kind === "file") {
    const pass = (await readPrivate(source.path, "route secret file")).replace(/\r?\n$/, "");
    const problem = clusterPassProblem(pass);
    if (problem) throw new SecretFileError(`--cluster-pass-file ${source.path}: ${problem}`);
    return { pass, warning: null };
  }
  return {
    pass: source.value,
    warning: source.kind === "flag"
      ? "the route secret was given with --cluster-pass: it is visible in ps and journald; use --cluster-pass-file"
      : null,
  };
}

/**
 * Loads the shared auth callout issuer (an account nkey seed) from `path`, or
 * creates it there (0600) when the file does not exist. Every node must use
 * the same file: nats-server accepts a callout answer only when it is signed
 * by the issuer in its own config, and any node may answer any node's
 * request (they share one queue group across the cluster).
 *
 * @example
 * ```ts
 * const issuer = await loadOrCreateCalloutIssuer("/etc/unibus/callout-issuer.nk");
 * issuer.getPublicKey(); // "A…"
 * ```
 */
export async function loadOrCreateCalloutIssuer(path: string): Promise<NativeNkeyPair> {
  const exists = await Deno.lstat(path).then(() => true, () => false);
  if (!exists) {
    const fresh = NativeNkeyPair.generate(Prefix.Account);
    // Written whole under a private temporary name, then linked into place
    // (link fails if the name exists): nodes started together on one host
    // race here, and one that opened the real name before the seed was in it
    // read an empty file and refused to start.
    const tmp = privateTempPath(path);
    try {
      await writePrivateTemp(tmp, new Uint8Array([...fresh.getSeed(), 0x0a]));
      await Deno.link(tmp, path);
      return fresh;
    } catch (err) {
      // Another node on this host created it first: use theirs.
      if (!(err instanceof Deno.errors.AlreadyExists)) {
        throw new SecretFileError(
          `cannot create callout issuer file ${path}: ${(err as Error).message}`,
        );
      }
    } finally {
      await Deno.remove(tmp).catch(() => {});
    }
  }
  const text = (await readPrivate(path, "callout issuer file")).trim();
  try {
    const { prefix, buf } = Codec.decodeSeed(new TextEncoder().encode(text));
    if (prefix !== Prefix.Account) throw new Error("not an account seed");
    return new NativeNkeyPair(Prefix.Account, buf);
  } catch {
    throw new SecretFileError(
      `callout issuer file ${path} does not hold an account nkey seed (SA…)`,
    );
  }
}
