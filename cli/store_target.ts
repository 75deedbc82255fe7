/**
 * Which control-plane store an administration command works on: a SQLite
 * file (offline, or beside a running single node), or a running node's KV
 * buckets as the internal service identity (`--store kv`). Shared by `user`,
 * `backup` and `restore`, so each names its target with the same flags and
 * meets the same refusals.
 *
 * @module
 */

import { dirname } from "node:path";
import { appendAudit } from "../lib/audit_log.ts";
import { type KvStore, openStore, type SqliteStore } from "../lib/store/mod.ts";
import { type OptionTable, UsageError } from "./args.ts";
import { KV_TARGET_OPTIONS, type KvTarget, openKvTarget, parseKvTarget } from "./kv_target.ts";

/** Where `serve` keeps its SQLite file with its default `--data-dir`. */
export const DEFAULT_DB_PATH = "./local_files/unibus.db";

/** The flags that choose a store: `--db`, `--store`, and the KV target's. */
export const STORE_OPTIONS: OptionTable = {
  db: {
    type: "string",
    valueName: "PATH",
    description: "SQLite file of the control plane",
    defaultText: DEFAULT_DB_PATH,
  },
  store: {
    type: "string",
    valueName: "sqlite|kv",
    description: "the SQLite file (offline), or a running node's KV buckets (live)",
    defaultText: "sqlite",
  },
  ...KV_TARGET_OPTIONS,
};

type Values = Record<string, string | boolean | undefined>;

function str(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

/** A SQLite file, or a node's KV buckets. */
export type StoreTarget = { kind: "sqlite"; db: string } | { kind: "kv"; kv: KvTarget };

/**
 * The target the flags name; throws {@linkcode UsageError}. With `dataDir`,
 * `--data-dir DIR` names `DIR/unibus.db` (serve's layout).
 *
 * @example
 * ```ts
 * storeTargetOf({ store: "kv", "internal-id-file": "/srv/unibus/internal.id" });
 * ```
 */
export function storeTargetOf(values: Values, opts: { dataDir?: boolean } = {}): StoreTarget {
  const store = str(values, "store") ?? "sqlite";
  const dataDir = opts.dataDir ? str(values, "data-dir") : undefined;
  if (store === "kv") {
    if (str(values, "db") !== undefined) throw new UsageError("--db is for --store sqlite");
    if (dataDir !== undefined) throw new UsageError("--data-dir is for --store sqlite");
    return { kind: "kv", kv: parseKvTarget(values) };
  }
  if (store !== "sqlite") throw new UsageError(`--store must be sqlite or kv, not "${store}"`);
  for (const f of Object.keys(KV_TARGET_OPTIONS)) {
    if (str(values, f) !== undefined) throw new UsageError(`--${f} needs --store kv`);
  }
  if (dataDir === "") throw new UsageError("--data-dir must not be empty");
  if (dataDir !== undefined && str(values, "db") !== undefined) {
    throw new UsageError("give --data-dir or --db, not both");
  }
  const db = dataDir !== undefined
    ? `${dataDir.replace(/\/+$/, "")}/unibus.db`
    : str(values, "db") ?? DEFAULT_DB_PATH;
  if (db.length === 0) throw new UsageError("--db must not be empty");
  return { kind: "sqlite", db };
}

/**
 * The target as messages name it.
 *
 * @example
 * ```ts
 * describeTarget({ kind: "sqlite", db: "./local_files/unibus.db" }); // "./local_files/unibus.db"
 * ```
 */
export function describeTarget(t: StoreTarget): string {
  return t.kind === "sqlite" ? t.db : `the KV at ${t.kv.natsUrl}`;
}

/**
 * Refuses a SQLite path that is not an existing file. Only a file that is
 * already there may be administered (list, revoke), backed up or migrated:
 * opening a mistyped path would create an empty store and report "no users".
 *
 * @example
 * ```ts
 * await requireDb("./local_files/unibus.db"); // throws "no database at …" if absent
 * ```
 */
export async function requireDb(path: string): Promise<void> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`no database at ${path}`);
    throw e;
  }
  if (!st.isFile) throw new Error(`no database at ${path} (not a regular file)`);
}

/**
 * Opens the target's store: KV through the internal identity, SQLite only
 * if the file exists unless `mayCreate`.
 *
 * @example
 * ```ts
 * const store = await openTargetStore(target);
 * try { console.log(await store.listUsers()); } finally { await store.close(); }
 * ```
 */
export async function openTargetStore(
  t: StoreTarget,
  opts: { mayCreate?: boolean } = {},
): Promise<SqliteStore | KvStore> {
  if (t.kind === "kv") return await openKvTarget(t.kv);
  if (!opts.mayCreate) await requireDb(t.db);
  return await openStore({ kind: "sqlite", path: t.db });
}

/**
 * Appends a change made from the command line to the audit log: the CLI
 * writes the SQLite file (or the KV) itself, so no serve sees who made the
 * change, nor from where. The log is `explicit`, or `audit.log` beside the
 * SQLite file or the internal identity file.
 *
 * @example
 * ```ts
 * await auditCliChange(undefined, target, "user.revoke", "user revoked", { signPub });
 * ```
 */
export async function auditCliChange(
  explicit: string | undefined,
  target: StoreTarget,
  event: string,
  msg: string,
  fields: Record<string, unknown>,
): Promise<void> {
  const path = explicit ??
    `${dirname(target.kind === "sqlite" ? target.db : target.kv.internalIdFile)}/audit.log`;
  let host = "?";
  try {
    host = Deno.hostname();
  } catch { /* no hostname: the line still says who */ }
  try {
    await appendAudit(path, event, msg, {
      ...fields,
      store: target.kind,
      by: "cli",
      osUser: Deno.env.get("SUDO_USER") ?? Deno.env.get("USER") ?? null,
      host,
    });
  } catch (err) {
    throw new Error(
      `the change was made, but its audit line could not be written to ${path} ` +
        `(${err instanceof Error ? err.message : err}); give --audit-log FILE`,
    );
  }
}
