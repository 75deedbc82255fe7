/**
 * The embedded SQLite backend of the control-plane {@linkcode Store}: one file,
 * mode 0600, WAL, versioned migrations.
 *
 * @example
 * ```ts
 * import { openSqliteStore } from "./sqlite.ts";
 * const store = await openSqliteStore("/var/lib/unibus/control.db");
 * console.log(await store.listUsers());
 * await store.close();
 * ```
 * @module
 */

import { type Client, createClient, type InValue } from "@libsql/client";
import { dirname, resolve } from "node:path";
import { migrate } from "./migrations.ts";
import { SqliteRoomData } from "./sqlite_room_data.ts";
import {
  fileUrl,
  mapError,
  rawCode,
  roomRowArgs,
  SQLITE_CONSTRAINT_FOREIGNKEY,
  SQLITE_CONSTRAINT_PRIMARYKEY,
  SQLITE_CONSTRAINT_UNIQUE,
  str,
  toMember,
  toRoom,
  toUser,
  unavailable,
} from "./sqlite_rows.ts";
import {
  type Blob,
  type BlobMeta,
  type BlobUsage,
  check,
  ConflictError,
  InvalidInputError,
  type Member,
  MemberExistsError,
  memberRow,
  type NewBlob,
  type NewMember,
  type NewRoom,
  newRoomRow,
  type NewSealedKey,
  type NewUser,
  newUserRow,
  NotFoundError,
  type Room,
  type RoomChange,
  type RoomCounts,
  RoomExistsError,
  type RoomGenesis,
  type RoomStateAfter,
  type SealedKey,
  type Store,
  type StoreChange,
  StoreError,
  StoreUnavailableError,
  type StoreWatch,
  type User,
  type UserAccess,
  UserExistsError,
  validateAppliedChange,
  validateEpochMove,
  validateGenesis,
  validateNewMember,
} from "./store.ts";

/** How long a writer waits for another process's lock before giving up. */
const BUSY_TIMEOUT_MS = 5000;

/** How often the change feed asks SQLite whether another process wrote the file. */
const WATCH_POLL_MS = 250;

/** Users whose access {@linkcode SqliteStore.getUserAccess} keeps in memory (oldest dropped). */
const ACCESS_CACHE_LIMIT = 1024;

// What "has anything been committed since?" is asked with, in one statement:
// this connection's marker (a random id in a TEMP table, which only this
// connection sees), SQLite's data_version (moves when any OTHER connection,
// in this process or another, commits) and total_changes() (every row this
// connection has inserted, updated or deleted, triggers included).
const CHANGE_TOKEN_SQL = `SELECT id, (SELECT data_version FROM pragma_data_version) AS v,
  total_changes() AS c FROM temp.unibus_connection`;

/**
 * Opens (creating if needed) the SQLite store at `path` and migrates it.
 * The file is created 0600 and an existing looser file is tightened, because
 * it holds the user registry and sealed keys.
 *
 * @example
 * ```ts
 * import { openSqliteStore } from "./sqlite.ts";
 * const store = await openSqliteStore("./data/control.db");
 * await store.close();
 * ```
 */
export async function openSqliteStore(path: string): Promise<Store> {
  return await SqliteStore.open(path);
}

/**
 * One connection to the file at `abs`: per-connection pragmas then always
 * apply, and calls in this process are serialised without interactive
 * transactions.
 */
function openClient(abs: string): Client {
  try {
    return createClient({ url: fileUrl(abs), concurrency: 1, timeout: BUSY_TIMEOUT_MS });
  } catch (e) {
    throw unavailable(`cannot open store at ${abs}`, e);
  }
}

/**
 * Copies the control plane in the SQLite file `source` (its WAL included)
 * into a new file `target`, as of one instant: `VACUUM INTO` reads inside one
 * transaction, so a serve writing meanwhile is neither stopped nor half
 * copied. The source is only read: no pragma that persists and no schema
 * migration touch it (open the copy to migrate).
 *
 * @example
 * ```ts
 * await snapshotSqliteFile("/var/lib/unibus/unibus.db", "/tmp/backup/unibus.db");
 * ```
 */
export async function snapshotSqliteFile(source: string, target: string): Promise<void> {
  const abs = resolve(source);
  const client = openClient(abs);
  try {
    await client.execute(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    await client.execute({ sql: "VACUUM INTO ?", args: [resolve(target)] });
  } catch (e) {
    throw unavailable(`cannot snapshot the store at ${abs}`, e);
  } finally {
    client.close();
  }
}

/**
 * {@linkcode Store} on a local SQLite file through `@libsql/client`.
 *
 * @example
 * ```ts
 * import { SqliteStore } from "./sqlite.ts";
 * const store = await SqliteStore.open("./data/control.db");
 * await store.close();
 * ```
 */
export class SqliteStore implements Store {
  readonly kind = "sqlite" as const;
  /** Absolute path of the database file. */
  readonly path: string;
  #client: Client | null;
  #watchers = new Set<(change: StoreChange) => void>();
  /** getUserAccess's answers, each with the change token read before it. */
  #access = new Map<string, { token: string; access: UserAccess }>();
  #marking: Promise<void> | null = null;

  private constructor(path: string, client: Client) {
    this.path = path;
    this.#client = client;
  }

  /** Tells this process's watchers about a write it made (other processes are polled). */
  /** Sealed keys, nonces, blobs and the export (sqlite_room_data.ts). */
  #data = new SqliteRoomData({
    exec: (sql, args) => this.#exec(sql, args),
    batch: (stmts) => this.#batch(stmts),
    requireRoom: (roomId) => this.#requireRoom(roomId),
  });

  #emit(change: StoreChange): void {
    for (const w of this.#watchers) w(change);
  }

  /**
   * Prepares the file with safe permissions, connects, and applies migrations.
   *
   * @example
   * ```ts
   * import { SqliteStore } from "./sqlite.ts";
   * const store = await SqliteStore.open("/tmp/unibus/control.db");
   * await store.close();
   * ```
   */
  static async open(path: string): Promise<SqliteStore> {
    if (typeof path !== "string" || path.length === 0) {
      throw new InvalidInputError("path", "must be a non-empty file path");
    }
    const abs = resolve(path);
    await prepareFile(abs);
    const client = openClient(abs);
    try {
      await client.execute("PRAGMA journal_mode = WAL");
      await client.execute("PRAGMA foreign_keys = ON");
      await client.execute(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
      await migrate(client);
    } catch (e) {
      client.close();
      if (e instanceof StoreError) throw e;
      throw unavailable(`cannot open store at ${abs}`, e);
    }
    return new SqliteStore(abs, client);
  }

  // ---- users ----

  async addUser(user: NewUser): Promise<User> {
    const row = newUserRow(user);
    const rs = await this.#exec(
      `INSERT INTO users (sign_pub, kex_pub, kex_sig, handle, role, status, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      [row.signPub, row.kexPub, row.kexSig, row.handle, row.role, row.status, row.createdAt],
    );
    if (rs.rowsAffected === 0) throw new UserExistsError(user.signPub);
    this.#emit({ kind: "user", signPub: row.signPub });
    return row;
  }

  async getUser(signPub: string): Promise<User | null> {
    check.signPub("signPub", signPub);
    const rs = await this.#exec("SELECT * FROM users WHERE sign_pub = ?", [signPub]);
    return rs.rows.length ? toUser(rs.rows[0]) : null;
  }

  /**
   * The auth callout's read, answered from memory while nothing has been
   * committed to the file since it was read, and read again otherwise.
   *
   * Why a cached answer is never staler than a fresh read: every lookup first
   * reads the change token (CHANGE_TOKEN_SQL) on the one connection this
   * store uses; an entry is filled with the token read BEFORE its data, and
   * used only when the token read now is equal. Equal tokens mean that
   * between the two token reads
   * - no other connection committed (data_version: `unibus user revoke` on
   *   the file, another serve, this process's other stores),
   * - this connection changed no row (total_changes, counted by SQLite as the
   *   statement runs, so no write can slip between a write and its count the
   *   way a counter kept in JavaScript after an `await` could),
   * - and it is the same connection: if the client ever replaced it (it
   *   drops a connection whose rollback failed), the new one has no marker,
   *   the token read fails, the cache is emptied and a new random marker is
   *   written, so no token of the old connection can match again.
   * The data was read after the first token read, so it holds every commit
   * before it, and there were none after: a revoked user or a removed
   * membership is read again, not served from memory, at the next login.
   * A store that cannot be read (the token read fails twice) throws: the
   * callout then refuses the login, whatever is in memory.
   */
  async getUserAccess(signPub: string): Promise<UserAccess> {
    check.signPub("signPub", signPub);
    const token = await this.#changeToken();
    const hit = this.#access.get(signPub);
    if (hit && hit.token === token) return hit.access;
    const user = await this.getUser(signPub);
    const rooms = await this.listRoomsForMember(signPub);
    const access = { user, rooms };
    this.#access.delete(signPub);
    if (this.#access.size >= ACCESS_CACHE_LIMIT) {
      this.#access.delete(this.#access.keys().next().value!);
    }
    this.#access.set(signPub, { token, access });
    return access;
  }

  async #changeToken(): Promise<string> {
    for (let attempt = 0;; attempt++) {
      try {
        const row = (await this.#exec(CHANGE_TOKEN_SQL)).rows[0];
        if (row) return `${str(row.id)}/${Number(row.v)}/${Number(row.c)}`;
      } catch (e) {
        if (attempt > 0) throw e;
      }
      if (attempt > 0) throw unavailable("store change token unreadable", null);
      this.#marking ??= this.#mark().finally(() => this.#marking = null);
      await this.#marking;
    }
  }

  // No marker on this connection: the first read, or a connection the
  // client opened anew. Nothing cached against an earlier token may be used
  // from now on. One at a time, so two logins cannot interleave the steps.
  async #mark(): Promise<void> {
    this.#access.clear();
    await this.#exec("CREATE TEMP TABLE IF NOT EXISTS unibus_connection (id TEXT NOT NULL)");
    await this.#exec("DELETE FROM temp.unibus_connection");
    await this.#exec("INSERT INTO temp.unibus_connection (id) VALUES (?)", [crypto.randomUUID()]);
  }

  async listUsers(): Promise<User[]> {
    const rs = await this.#exec("SELECT * FROM users ORDER BY created_at, handle, sign_pub");
    return rs.rows.map(toUser);
  }

  async revokeUser(signPub: string): Promise<void> {
    check.signPub("signPub", signPub);
    const rs = await this.#exec("UPDATE users SET status = 'revoked' WHERE sign_pub = ?", [
      signPub,
    ]);
    if (rs.rowsAffected === 0) throw new NotFoundError("user", signPub);
    this.#emit({ kind: "user", signPub });
  }

  async setUserMaxConnections(signPub: string, max: number | null): Promise<void> {
    check.signPub("signPub", signPub);
    if (max !== null) check.maxConnections("max", max);
    const rs = await this.#exec("UPDATE users SET max_connections = ? WHERE sign_pub = ?", [
      max,
      signPub,
    ]);
    if (rs.rowsAffected === 0) throw new NotFoundError("user", signPub);
    this.#emit({ kind: "user", signPub });
  }

  async setUserKex(signPub: string, kexPub: string, kexSig: string): Promise<void> {
    check.signPub("signPub", signPub);
    check.kexPub("kexPub", kexPub);
    check.hex("kexSig", kexSig);
    // Only while unset, in one statement: two racing registrations cannot
    // both see "none yet" and let the last one win.
    const rs = await this.#exec(
      "UPDATE users SET kex_pub = ?, kex_sig = ? WHERE sign_pub = ? AND kex_pub IS NULL",
      [kexPub, kexSig, signPub],
    );
    if (rs.rowsAffected > 0) return;
    const user = await this.getUser(signPub);
    if (user === null) throw new NotFoundError("user", signPub);
    if (user.kexPub === kexPub && user.kexSig === kexSig) return;
    throw new ConflictError(`user ${signPub} already has a different key-exchange key`);
  }

  // ---- rooms ----

  async createRoom(room: NewRoom, genesis?: RoomGenesis): Promise<Room> {
    const row = newRoomRow(room);
    if (genesis !== undefined) {
      validateGenesis(room.id, genesis);
      await this.#createRoomWithGenesis(row, genesis);
      this.#emit({ kind: "room", roomId: row.id });
      return row;
    }
    // Without a conflict target, DO NOTHING covers both the id and the subject.
    const rs = await this.#exec(
      `INSERT INTO rooms (id, subject, encrypt, sign, persist, created_by, created_at, epoch)
       VALUES (?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT DO NOTHING`,
      roomRowArgs(row),
    );
    if (rs.rowsAffected === 0) throw new RoomExistsError(room.id, room.subject);
    this.#emit({ kind: "room", roomId: row.id });
    return row;
  }

  /** One transaction: a taken id or subject aborts it before anything is written. */
  async #createRoomWithGenesis(row: Room, genesis: RoomGenesis): Promise<void> {
    const now = Date.now();
    try {
      await this.#batch([
        {
          sql:
            `INSERT INTO rooms (id, subject, encrypt, sign, persist, created_by, created_at, epoch)
                VALUES (?, ?, ?, ?, ?, ?, ?, 0)`,
          args: roomRowArgs(row),
        },
        {
          sql: "INSERT INTO room_changes (room_id, seq, text, sig) VALUES (?, 0, ?, ?)",
          args: [row.id, genesis.change.text, genesis.change.sig],
        },
        ...genesis.members.map((spec) => memberRow(spec, now)).map((m) => ({
          sql: `INSERT INTO members (room_id, sign_pub, role, added_by, added_at, change)
                VALUES (?, ?, ?, ?, ?, ?)`,
          args: [row.id, m.signPub, m.role, m.addedBy, m.addedAt, m.change],
        })),
      ]);
    } catch (e) {
      const code = rawCode(e);
      if (code === SQLITE_CONSTRAINT_PRIMARYKEY || code === SQLITE_CONSTRAINT_UNIQUE) {
        throw new RoomExistsError(row.id, row.subject);
      }
      throw e;
    }
  }

  async getRoom(id: string): Promise<Room | null> {
    check.id("id", id);
    const rs = await this.#exec("SELECT * FROM rooms WHERE id = ?", [id]);
    return rs.rows.length ? toRoom(rs.rows[0]) : null;
  }

  async getRoomBySubject(subject: string): Promise<Room | null> {
    check.subject("subject", subject);
    const rs = await this.#exec("SELECT * FROM rooms WHERE subject = ?", [subject]);
    return rs.rows.length ? toRoom(rs.rows[0]) : null;
  }

  async listRoomsForMember(signPub: string): Promise<Room[]> {
    check.signPub("signPub", signPub);
    const rs = await this.#exec(
      `SELECT r.* FROM members m JOIN rooms r ON r.id = m.room_id
       WHERE m.sign_pub = ? ORDER BY r.id`,
      [signPub],
    );
    return rs.rows.map(toRoom);
  }

  async countRoomsCreatedBy(signPub: string): Promise<RoomCounts> {
    check.signPub("signPub", signPub);
    const rs = await this.#exec(
      `SELECT COUNT(*) AS rooms, COALESCE(SUM(persist), 0) AS persisted
       FROM rooms WHERE created_by = ?`,
      [signPub],
    );
    return { rooms: Number(rs.rows[0].rooms), persisted: Number(rs.rows[0].persisted) };
  }

  async setRoomEpoch(id: string, expectedEpoch: number, newEpoch: number): Promise<void> {
    validateEpochMove(id, expectedEpoch, newEpoch);
    const rs = await this.#exec(
      "UPDATE rooms SET epoch = ? WHERE id = ? AND epoch = ?",
      [newEpoch, id, expectedEpoch],
    );
    if (rs.rowsAffected > 0) {
      this.#emit({ kind: "room", roomId: id });
      return;
    }
    const room = await this.getRoom(id);
    if (room === null) throw new NotFoundError("room", id);
    throw new ConflictError(`room ${id} epoch is ${room.epoch}, expected ${expectedEpoch}`);
  }

  async deleteRoom(id: string): Promise<void> {
    check.id("id", id);
    // Explicit child deletes keep this correct even if foreign keys were off.
    // The blobs table has no foreign key to rooms, so only this removes them.
    const results = await this.#batch([
      { sql: "DELETE FROM sealed_keys WHERE room_id = ?", args: [id] },
      { sql: "DELETE FROM members WHERE room_id = ?", args: [id] },
      { sql: "DELETE FROM room_changes WHERE room_id = ?", args: [id] },
      { sql: "DELETE FROM blobs WHERE room_id = ?", args: [id] },
      { sql: "DELETE FROM rooms WHERE id = ?", args: [id] },
    ]);
    if (results[4].rowsAffected === 0) throw new NotFoundError("room", id);
    this.#emit({ kind: "room", roomId: id });
  }

  // ---- room change log ----

  async applyRoomChange(
    roomId: string,
    seq: number,
    change: { text: string; sig: string },
    after: RoomStateAfter,
  ): Promise<void> {
    validateAppliedChange(roomId, seq, change, after);
    const now = Date.now();
    const members = JSON.stringify(after.members.map((m) => memberRow(m, now)));
    // One transaction. The change goes in only on top of the newest one; the
    // member set and epoch are written only while this change is the newest
    // one stored (HEAD), which is what versions them by seq: a repeated older
    // change finds a newer head and writes nothing.
    const HEAD = `(SELECT MAX(seq) FROM room_changes WHERE room_id = ?1) = ?2
      AND EXISTS (SELECT 1 FROM room_changes WHERE room_id = ?1 AND seq = ?2 AND text = ?3 AND sig = ?4)`;
    const results = await this.#batch([
      {
        sql: `INSERT INTO room_changes (room_id, seq, text, sig)
              SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM rooms WHERE id = ?1)
              AND COALESCE((SELECT MAX(seq) FROM room_changes WHERE room_id = ?1), -1) = ?2 - 1`,
        args: [roomId, seq, change.text, change.sig],
      },
      {
        sql: `DELETE FROM members WHERE room_id = ?1 AND ${HEAD}
              AND NOT EXISTS (SELECT 1 FROM json_each(?5) j
                WHERE j.value ->> 'signPub' = members.sign_pub AND j.value ->> 'role' = members.role)`,
        args: [roomId, seq, change.text, change.sig, members],
      },
      {
        sql: `INSERT INTO members (room_id, sign_pub, role, added_by, added_at, change)
              SELECT ?1, j.value ->> 'signPub', j.value ->> 'role', j.value ->> 'addedBy',
                     j.value ->> 'addedAt', j.value ->> 'change'
              FROM json_each(?5) j WHERE ${HEAD}
              ON CONFLICT DO NOTHING`,
        args: [roomId, seq, change.text, change.sig, members],
      },
      {
        sql: `UPDATE rooms SET epoch = ?5 WHERE id = ?1 AND epoch < ?5 AND ${HEAD}`,
        args: [roomId, seq, change.text, change.sig, after.epoch],
      },
    ]);
    if (results[0].rowsAffected === 0) {
      await this.#requireRoom(roomId);
      const rs = await this.#exec(
        "SELECT text, sig FROM room_changes WHERE room_id = ? AND seq = ?",
        [roomId, seq],
      );
      const stored = rs.rows[0];
      if (!stored || str(stored.text) !== change.text || str(stored.sig) !== change.sig) {
        throw new ConflictError(
          stored
            ? `room ${roomId} already has change ${seq}`
            : `room ${roomId} change ${seq} does not follow its newest change`,
        );
      }
    }
    this.#emit({ kind: "room", roomId });
  }

  async listRoomChanges(roomId: string): Promise<RoomChange[]> {
    check.id("roomId", roomId);
    const rs = await this.#exec(
      "SELECT seq, text, sig FROM room_changes WHERE room_id = ? ORDER BY seq",
      [roomId],
    );
    return rs.rows.map((r) => ({ seq: Number(r.seq), text: str(r.text), sig: str(r.sig) }));
  }

  // ---- members ----

  async addMember(member: NewMember): Promise<Member> {
    validateNewMember(member);
    const row: Member = { roomId: member.roomId, ...memberRow(member, Date.now()) };
    await this.#requireRoom(member.roomId);
    let affected: number;
    try {
      const rs = await this.#exec(
        `INSERT INTO members (room_id, sign_pub, role, added_by, added_at, change)
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
        [row.roomId, row.signPub, row.role, row.addedBy, row.addedAt, row.change],
      );
      affected = rs.rowsAffected;
    } catch (e) {
      // The room was deleted between the check and the insert.
      if (rawCode(e) === SQLITE_CONSTRAINT_FOREIGNKEY) throw new NotFoundError("room", row.roomId);
      throw e;
    }
    if (affected === 0) throw new MemberExistsError(member.roomId, member.signPub);
    this.#emit({ kind: "room", roomId: row.roomId });
    return row;
  }

  async removeMember(roomId: string, signPub: string): Promise<void> {
    check.id("roomId", roomId);
    check.signPub("signPub", signPub);
    const rs = await this.#exec("DELETE FROM members WHERE room_id = ? AND sign_pub = ?", [
      roomId,
      signPub,
    ]);
    if (rs.rowsAffected === 0) throw new NotFoundError("member", `${signPub} in room ${roomId}`);
    this.#emit({ kind: "room", roomId });
  }

  async listMembers(roomId: string): Promise<Member[]> {
    check.id("roomId", roomId);
    const rs = await this.#exec(
      "SELECT * FROM members WHERE room_id = ? ORDER BY added_at, sign_pub",
      [roomId],
    );
    return rs.rows.map(toMember);
  }

  async getMember(roomId: string, signPub: string): Promise<Member | null> {
    check.id("roomId", roomId);
    check.signPub("signPub", signPub);
    const rs = await this.#exec("SELECT * FROM members WHERE room_id = ? AND sign_pub = ?", [
      roomId,
      signPub,
    ]);
    return rs.rows.length ? toMember(rs.rows[0]) : null;
  }

  // ---- sealed keys, nonces, blobs, export: sqlite_room_data.ts ----

  putSealedKeys(roomId: string, epoch: number, keys: NewSealedKey[]): Promise<SealedKey[]> {
    return this.#data.putSealedKeys(roomId, epoch, keys);
  }

  getSealedKey(roomId: string, epoch: number, recipient: string): Promise<SealedKey | null> {
    return this.#data.getSealedKey(roomId, epoch, recipient);
  }

  listSealedKeysFor(roomId: string, recipient: string): Promise<SealedKey[]> {
    return this.#data.listSealedKeysFor(roomId, recipient);
  }

  rememberNonce(nonce: string, expiresAt: number, now: number = Date.now()): Promise<boolean> {
    return this.#data.rememberNonce(nonce, expiresAt, now);
  }

  pruneNonces(now: number): Promise<number> {
    return this.#data.pruneNonces(now);
  }

  putBlob(blob: NewBlob): Promise<BlobMeta> {
    return this.#data.putBlob(blob);
  }

  getBlob(id: string): Promise<Blob | null> {
    return this.#data.getBlob(id);
  }

  getBlobMeta(id: string): Promise<BlobMeta | null> {
    return this.#data.getBlobMeta(id);
  }

  deleteBlob(id: string): Promise<void> {
    return this.#data.deleteBlob(id);
  }

  blobUsageOf(owner: string): Promise<BlobUsage> {
    return this.#data.blobUsageOf(owner);
  }

  listRooms(): Promise<Room[]> {
    return this.#data.listRooms();
  }

  listSealedKeys(roomId: string): Promise<SealedKey[]> {
    return this.#data.listSealedKeys(roomId);
  }

  listBlobIds(): Promise<string[]> {
    return this.#data.listBlobIds();
  }

  // ---- change feed ----

  watchChanges(onChange: (change: StoreChange) => void): StoreWatch {
    // This process's writes are reported as they commit; writes by other
    // processes (the offline `unibus user` commands) are found by polling
    // SQLite's data_version, which moves only when another connection
    // committed, so an idle poll costs one tiny query.
    this.#watchers.add(onChange);
    let last: number | null = null;
    let running = true;
    const poll = async () => {
      if (!running || this.#client === null) return;
      try {
        const rs = await this.#exec("PRAGMA data_version");
        const v = Number(rs.rows[0]?.data_version);
        if (last !== null && v !== last) onChange({ kind: "all" });
        last = v;
      } catch {
        // Unreadable now: say "anything may have changed" once it reads again.
        last = -1;
      }
    };
    let polling = poll();
    const timer = setInterval(() => {
      polling = polling.then(poll);
    }, WATCH_POLL_MS);
    return {
      ready: polling,
      stop: async () => {
        running = false;
        clearInterval(timer);
        this.#watchers.delete(onChange);
        await polling;
      },
    };
  }

  // ---- lifecycle ----

  close(): Promise<void> {
    this.#access.clear();
    this.#client?.close();
    this.#client = null;
    return Promise.resolve();
  }

  async #requireRoom(roomId: string): Promise<void> {
    const rs = await this.#exec("SELECT 1 FROM rooms WHERE id = ?", [roomId]);
    if (rs.rows.length === 0) throw new NotFoundError("room", roomId);
  }

  async #exec(sql: string, args: InValue[] = []) {
    const client = this.#open();
    try {
      return await client.execute({ sql, args });
    } catch (e) {
      throw mapError(e);
    }
  }

  async #batch(stmts: { sql: string; args: InValue[] }[]) {
    const client = this.#open();
    try {
      return await client.batch(stmts, "write");
    } catch (e) {
      throw mapError(e);
    }
  }

  #open(): Client {
    if (this.#client === null) throw new StoreUnavailableError("store is closed");
    return this.#client;
  }
}

// ---- helpers ----

/** Creates the parent dir (0700) and the file (0600); tightens a looser file. */
async function prepareFile(abs: string): Promise<void> {
  try {
    await Deno.mkdir(dirname(abs), { recursive: true, mode: 0o700 });
    const f = await Deno.open(abs, { read: true, write: true, create: true, mode: 0o600 });
    f.close();
    if (Deno.build.os === "windows") return;
    // SQLite creates -wal/-shm with the main file's mode, but old ones may be looser.
    for (const p of [abs, `${abs}-wal`, `${abs}-shm`]) {
      const st = await Deno.stat(p).catch(() => null);
      if (st?.mode != null && (st.mode & 0o077) !== 0) await Deno.chmod(p, 0o600);
    }
  } catch (e) {
    throw unavailable(`cannot prepare store file ${abs}`, e);
  }
}
