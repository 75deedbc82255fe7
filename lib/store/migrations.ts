/**
 * Versioned SQLite schema migrations, applied in order at open and recorded in
 * `schema_migrations`. Append new migrations; never edit a released one, since
 * databases in the field have already recorded it as applied.
 *
 * @example
 * ```ts
 * import { createClient } from "@libsql/client";
 * import { migrate } from "./migrations.ts";
 * const db = createClient({ url: "file:/tmp/unibus-example.db" });
 * const applied = await migrate(db); // e.g. [1, 2] on a fresh file, [] afterwards
 * db.close();
 * ```
 * @module
 */

import type { Client } from "@libsql/client";
import { SchemaTooNewError } from "./store.ts";

/** One schema step: its statements run in a single transaction. */
export interface Migration {
  version: number;
  name: string;
  sql: string[];
}

/** All migrations, ascending by version starting at 1. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "initial control-plane schema",
    sql: [
      `CREATE TABLE users (
        sign_pub   TEXT PRIMARY KEY,
        kex_pub    TEXT,
        kex_sig    TEXT,
        handle     TEXT NOT NULL,
        role       TEXT NOT NULL CHECK (role IN ('admin', 'member')),
        status     TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
        created_at INTEGER NOT NULL
      ) STRICT`,
      `CREATE TABLE rooms (
        id         TEXT PRIMARY KEY,
        subject    TEXT NOT NULL UNIQUE,
        encrypt    INTEGER NOT NULL CHECK (encrypt IN (0, 1)),
        sign       INTEGER NOT NULL CHECK (sign IN (0, 1)),
        persist    INTEGER NOT NULL CHECK (persist IN (0, 1)),
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        epoch      INTEGER NOT NULL DEFAULT 0
      ) STRICT`,
      `CREATE TABLE members (
        room_id  TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
        sign_pub TEXT NOT NULL,
        role     TEXT NOT NULL CHECK (role IN ('admin', 'member')),
        added_by TEXT NOT NULL,
        added_at INTEGER NOT NULL,
        change   TEXT,
        PRIMARY KEY (room_id, sign_pub)
      ) STRICT`,
      // The rooms-by-member index of the KV backend is this SQL index.
      `CREATE INDEX members_by_sign_pub ON members (sign_pub, room_id)`,
      `CREATE TABLE sealed_keys (
        room_id    TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
        epoch      INTEGER NOT NULL,
        recipient  TEXT NOT NULL,
        sealed     TEXT NOT NULL,
        sealed_by  TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (room_id, recipient, epoch)
      ) STRICT`,
      `CREATE TABLE nonces (
        nonce      TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
      ) STRICT`,
      `CREATE INDEX nonces_by_expiry ON nonces (expires_at)`,
      `CREATE TABLE blobs (
        id         TEXT PRIMARY KEY,
        room_id    TEXT NOT NULL,
        owner      TEXT NOT NULL,
        size       INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        data       BLOB NOT NULL
      ) STRICT`,
      `CREATE INDEX blobs_by_room ON blobs (room_id)`,
    ],
  },
  {
    version: 2,
    name: "room membership change log",
    sql: [
      // The primary key is the compare-and-set: of two changes racing for the
      // same seq exactly one insert succeeds, which serialises membership
      // changes without a multi-row transaction.
      `CREATE TABLE room_changes (
        room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
        seq     INTEGER NOT NULL CHECK (seq >= 0),
        text    TEXT NOT NULL,
        sig     TEXT NOT NULL,
        PRIMARY KEY (room_id, seq)
      ) STRICT`,
    ],
  },
  {
    version: 3,
    name: "quota counts by room creator and blob owner",
    sql: [
      // Quotas count a user's rooms and blobs on every create and upload; the
      // indexes keep that a lookup instead of a scan of every room and blob.
      `CREATE INDEX rooms_by_creator ON rooms (created_by, persist)`,
      `CREATE INDEX blobs_by_owner ON blobs (owner, size)`,
    ],
  },
  {
    version: 4,
    name: "per-user connection limit",
    sql: [
      // NULL: the node's --max-connections-per-user applies.
      `ALTER TABLE users ADD COLUMN max_connections INTEGER
        CHECK (max_connections IS NULL OR max_connections > 0)`,
    ],
  },
];

/** Highest schema version this code understands. */
export const LATEST_SCHEMA_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1].version;

/**
 * The highest applied version recorded in the database (0 if none).
 *
 * @example
 * ```ts
 * import { createClient } from "@libsql/client";
 * import { currentSchemaVersion } from "./migrations.ts";
 * const db = createClient({ url: "file:/tmp/unibus-example.db" });
 * console.log(await currentSchemaVersion(db));
 * db.close();
 * ```
 */
export async function currentSchemaVersion(db: Client): Promise<number> {
  await ensureTable(db);
  const rs = await db.execute("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations");
  return Number(rs.rows[0].v);
}

/**
 * Applies pending migrations, each in its own write transaction, and returns
 * the versions applied. Throws {@linkcode SchemaTooNewError} if the database
 * records a version newer than {@linkcode LATEST_SCHEMA_VERSION}.
 *
 * @example
 * ```ts
 * import { createClient } from "@libsql/client";
 * import { migrate } from "./migrations.ts";
 * const db = createClient({ url: "file:/tmp/unibus-example.db" });
 * await migrate(db);
 * db.close();
 * ```
 */
export async function migrate(
  db: Client,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<number[]> {
  assertOrdered(migrations);
  const latest = migrations.length ? migrations[migrations.length - 1].version : 0;
  const current = await currentSchemaVersion(db);
  if (current > latest) throw new SchemaTooNewError(current, latest);
  const applied: number[] = [];
  for (const m of migrations) {
    if (m.version <= current) continue;
    try {
      // The record goes first: if another process applied this version since
      // we looked, its primary key aborts the whole batch before any DDL runs.
      await db.batch([
        {
          sql: "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
          args: [m.version, m.name, Date.now()],
        },
        ...m.sql,
      ], "write");
      applied.push(m.version);
    } catch (e) {
      if (await currentSchemaVersion(db) >= m.version) continue;
      throw e;
    }
  }
  return applied;
}

async function ensureTable(db: Client): Promise<void> {
  await db.execute(
    `CREATE TABLE IF NOT EXISTS schema_migrations (
      version    INTEGER PRIMARY KEY,
      name       TEXT NOT NULL,
      applied_at INTEGER NOT NULL
    )`,
  );
}

function assertOrdered(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new Error(`migration ${m.name} has version ${m.version}, expected ${i + 1}`);
    }
  });
}
