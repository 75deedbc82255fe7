/**
 * Opens the control-plane {@linkcode Store} a configuration names. This is the
 * one place that picks a backend: `serve`, the `user` commands and
 * `migrate-to-kv` all come through here.
 *
 * @example
 * ```ts
 * import { openStore } from "./mod.ts";
 * const store = await openStore({ kind: "sqlite", path: "./local_files/unibus.db" });
 * await store.close();
 * ```
 * @module
 */

import type { KvStore, KvStoreOptions } from "./kv.ts";
import type { SqliteStore } from "./sqlite.ts";
import type { Store } from "./store.ts";

export type { KvStore, KvStoreOptions } from "./kv.ts";
export type { SqliteStore } from "./sqlite.ts";
export { controlPlaneStreams } from "./kv_names.ts";
export { copyControlPlane, type CopyResult, type CopySource, type Tally } from "./copy.ts";

/** Which backend to open, and what it needs (the KV fields are {@linkcode KvStoreOptions}). */
export type StoreConfig =
  | { kind: "sqlite"; path: string }
  | ({ kind: "kv" } & KvStoreOptions);

/**
 * Opens the store `config` names. Backends load on demand, so a command on
 * one backend does not pay for the other.
 *
 * @example
 * ```ts
 * import { openStore } from "./mod.ts";
 * const store = await openStore({ kind: "sqlite", path: "./control.db" });
 * ```
 */
export async function openStore(config: { kind: "sqlite"; path: string }): Promise<SqliteStore>;
export async function openStore(config: { kind: "kv" } & KvStoreOptions): Promise<KvStore>;
export async function openStore(config: StoreConfig): Promise<Store>;
export async function openStore(config: StoreConfig): Promise<Store> {
  switch (config.kind) {
    case "sqlite": {
      const { openSqliteStore } = await import("./sqlite.ts");
      return await openSqliteStore(config.path);
    }
    case "kv": {
      const { openKvStore } = await import("./kv.ts");
      return await openKvStore(config);
    }
  }
}

/**
 * Copies a SQLite control-plane file as of one instant, WAL included, while
 * serve may be writing it (see `snapshotSqliteFile` in sqlite.ts).
 *
 * @example
 * ```ts
 * await snapshotSqlite("./local_files/unibus.db", "/tmp/snapshot.db");
 * ```
 */
export async function snapshotSqlite(source: string, target: string): Promise<void> {
  const { snapshotSqliteFile } = await import("./sqlite.ts");
  await snapshotSqliteFile(source, target);
}
