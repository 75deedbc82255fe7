/**
 * The SQLite store's sealed room keys, anti-replay nonces and blobs, and the
 * listings only migrate-to-kv needs; {@linkcode SqliteStore} delegates here.
 *
 * @module
 */

import type { InValue, ResultSet } from "@libsql/client";
import {
  rawCode,
  SQLITE_CONSTRAINT_FOREIGNKEY,
  SQLITE_CONSTRAINT_PRIMARYKEY,
  str,
  toBlobMeta,
  toRoom,
  toSealedKey,
} from "./sqlite_rows.ts";
import {
  type Blob,
  BlobExistsError,
  type BlobMeta,
  type BlobUsage,
  check,
  KeyExistsError,
  type NewBlob,
  type NewSealedKey,
  NotFoundError,
  type Room,
  type SealedKey,
  sealedKeyRows,
  validateNewBlob,
  validateNonce,
} from "./store.ts";

/** The statements this part runs, through its store's connection. */
export interface SqliteDb {
  exec(sql: string, args?: InValue[]): Promise<ResultSet>;
  batch(stmts: { sql: string; args: InValue[] }[]): Promise<ResultSet[]>;
  /** Throws NotFoundError when the room does not exist. */
  requireRoom(roomId: string): Promise<void>;
}

/**
 * Sealed keys, nonces, blobs and the export of a {@linkcode SqliteStore}.
 *
 * @example
 * ```ts
 * const data = new SqliteRoomData(db);
 * await data.getBlob(id);
 * ```
 */
export class SqliteRoomData {
  #db: SqliteDb;

  constructor(db: SqliteDb) {
    this.#db = db;
  }

  async putSealedKeys(roomId: string, epoch: number, keys: NewSealedKey[]): Promise<SealedKey[]> {
    const rows = sealedKeyRows(roomId, epoch, keys);
    await this.#db.requireRoom(roomId);
    try {
      // INSERTs in one batch: any existing key that differs aborts and rolls
      // back all; one stored exactly as given (an earlier try of the same
      // request) is skipped, so the retry completes instead of failing.
      await this.#db.batch(rows.map((r) => ({
        sql: `INSERT INTO sealed_keys (room_id, epoch, recipient, sealed, sealed_by, created_at)
              SELECT ?, ?, ?, ?, ?, ?
              WHERE NOT EXISTS (SELECT 1 FROM sealed_keys WHERE room_id = ? AND epoch = ?
                AND recipient = ? AND sealed = ? AND sealed_by = ?)`,
        args: [
          r.roomId,
          r.epoch,
          r.recipient,
          r.sealed,
          r.sealedBy,
          r.createdAt,
          r.roomId,
          r.epoch,
          r.recipient,
          r.sealed,
          r.sealedBy,
        ],
      })));
    } catch (e) {
      if (rawCode(e) === SQLITE_CONSTRAINT_FOREIGNKEY) throw new NotFoundError("room", roomId);
      if (rawCode(e) === SQLITE_CONSTRAINT_PRIMARYKEY) {
        for (const r of rows) {
          if (await this.getSealedKey(roomId, epoch, r.recipient)) {
            throw new KeyExistsError(roomId, epoch, r.recipient);
          }
        }
        throw new KeyExistsError(roomId, epoch, rows[0].recipient);
      }
      throw e;
    }
    return rows;
  }

  async getSealedKey(roomId: string, epoch: number, recipient: string): Promise<SealedKey | null> {
    check.id("roomId", roomId);
    check.count("epoch", epoch);
    check.signPub("recipient", recipient);
    const rs = await this.#db.exec(
      "SELECT * FROM sealed_keys WHERE room_id = ? AND recipient = ? AND epoch = ?",
      [roomId, recipient, epoch],
    );
    return rs.rows.length ? toSealedKey(rs.rows[0]) : null;
  }

  async listSealedKeysFor(roomId: string, recipient: string): Promise<SealedKey[]> {
    check.id("roomId", roomId);
    check.signPub("recipient", recipient);
    const rs = await this.#db.exec(
      "SELECT * FROM sealed_keys WHERE room_id = ? AND recipient = ? ORDER BY epoch",
      [roomId, recipient],
    );
    return rs.rows.map(toSealedKey);
  }

  // ---- nonces ----

  async rememberNonce(
    nonce: string,
    expiresAt: number,
    now: number = Date.now(),
  ): Promise<boolean> {
    validateNonce(nonce, expiresAt, now);
    // One statement, so it is atomic: a live nonce is neither replaced nor counted.
    const rs = await this.#db.exec(
      `INSERT INTO nonces (nonce, expires_at) VALUES (?, ?)
       ON CONFLICT (nonce) DO UPDATE SET expires_at = excluded.expires_at
       WHERE nonces.expires_at <= ?`,
      [nonce, expiresAt, now],
    );
    return rs.rowsAffected > 0;
  }

  async pruneNonces(now: number): Promise<number> {
    check.count("now", now);
    const rs = await this.#db.exec("DELETE FROM nonces WHERE expires_at <= ?", [now]);
    return rs.rowsAffected;
  }

  // ---- blobs ----

  async putBlob(blob: NewBlob): Promise<BlobMeta> {
    validateNewBlob(blob);
    const meta: BlobMeta = {
      id: blob.id,
      roomId: blob.roomId,
      owner: blob.owner,
      size: blob.data.byteLength,
      createdAt: blob.createdAt ?? Date.now(),
    };
    // Only into an existing room, in the same statement: a blob can never be
    // stored for a room that a concurrent deleteRoom has already removed.
    const rs = await this.#db.exec(
      `INSERT INTO blobs (id, room_id, owner, size, created_at, data)
       SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM rooms WHERE id = ?)
       ON CONFLICT DO NOTHING`,
      [meta.id, meta.roomId, meta.owner, meta.size, meta.createdAt, blob.data, meta.roomId],
    );
    if (rs.rowsAffected === 0) {
      if (await this.getBlobMeta(blob.id)) throw new BlobExistsError(blob.id);
      throw new NotFoundError("room", blob.roomId);
    }
    return meta;
  }

  async getBlob(id: string): Promise<Blob | null> {
    check.id("id", id);
    const rs = await this.#db.exec("SELECT * FROM blobs WHERE id = ?", [id]);
    if (!rs.rows.length) return null;
    const row = rs.rows[0];
    return { ...toBlobMeta(row), data: new Uint8Array(row.data as ArrayBuffer) };
  }

  async getBlobMeta(id: string): Promise<BlobMeta | null> {
    check.id("id", id);
    const rs = await this.#db.exec(
      "SELECT id, room_id, owner, size, created_at FROM blobs WHERE id = ?",
      [id],
    );
    return rs.rows.length ? toBlobMeta(rs.rows[0]) : null;
  }

  async deleteBlob(id: string): Promise<void> {
    check.id("id", id);
    const rs = await this.#db.exec("DELETE FROM blobs WHERE id = ?", [id]);
    if (rs.rowsAffected === 0) throw new NotFoundError("blob", id);
  }

  async blobUsageOf(owner: string): Promise<BlobUsage> {
    check.signPub("owner", owner);
    const rs = await this.#db.exec(
      "SELECT COUNT(*) AS count, COALESCE(SUM(size), 0) AS bytes FROM blobs WHERE owner = ?",
      [owner],
    );
    return { count: Number(rs.rows[0].count), bytes: Number(rs.rows[0].bytes) };
  }

  // ---- export (SQLite only: what migrate-to-kv enumerates) ----

  /**
   * Every room, by id. Not part of the Store contract: only backups and
   * migrations need every room, and KV has no cheap way to list them.
   *
   * @example
   * ```ts
   * for (const room of await store.listRooms()) console.log(room.id);
   * ```
   */
  async listRooms(): Promise<Room[]> {
    const rs = await this.#db.exec("SELECT * FROM rooms ORDER BY id");
    return rs.rows.map(toRoom);
  }

  /**
   * Every sealed key of a room, by epoch then recipient.
   *
   * @example
   * ```ts
   * const keys = await store.listSealedKeys("ops");
   * ```
   */
  async listSealedKeys(roomId: string): Promise<SealedKey[]> {
    check.id("roomId", roomId);
    const rs = await this.#db.exec(
      "SELECT * FROM sealed_keys WHERE room_id = ? ORDER BY epoch, recipient",
      [roomId],
    );
    return rs.rows.map(toSealedKey);
  }

  /**
   * The ids of every blob.
   *
   * @example
   * ```ts
   * const ids = await store.listBlobIds();
   * ```
   */
  async listBlobIds(): Promise<string[]> {
    const rs = await this.#db.exec("SELECT id FROM blobs ORDER BY id");
    return rs.rows.map((r) => str(r.id));
  }
}
