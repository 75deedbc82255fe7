/**
 * The backup archive of a control plane (`unibus backup`, `unibus restore`):
 * one file of JSON lines that any store can be restored from.
 *
 * ```text
 * {"unibus_backup":1,"unibus":"0.2.0","source":"sqlite","created_at":"2026-12-05T17:00:00.000Z"}
 * {"t":"user","user":{…}}                                  one per user, revoked included
 * {"t":"room","room":{…},"changes":[…],"members":[…]}      the signed log and member set
 * {"t":"key","key":{…}}                                    one per sealed room key
 * {"t":"blob","blob":{…},"sha256":"<hex>","data":"<base64>"}
 * {"t":"msg","room":"<id>","seq":<n>,"headers":{…},"data":"<base64>"}   with --with-history
 * {"t":"end","records":<n>,"sha256":"<hex of every byte before this line>"}
 * ```
 *
 * What reading one checks, before anything is written anywhere: the format
 * version is one this build reads (a newer archive is refused by name, never
 * half understood); the end line is there and its digest and count match (a
 * truncated or damaged file is refused); every record passes the store's own
 * input rules; every room's membership log verifies (signatures, chain,
 * rules) and proves exactly the stored subject, policy, epoch and members, so
 * a member slipped into an archive by hand is caught even though the file
 * digest can be recomputed by whoever edits it. Users carry no signature:
 * the allowlist in an archive is only as trustworthy as the place it is kept.
 *
 * An archive holds public keys, handles, signed changes, sealed keys (only
 * their recipients can open them) and blobs (encrypted by their uploaders);
 * no private key of any user or node.
 *
 * @example
 * ```ts
 * const archive = await VerifiedArchive.open("cp.unibus-backup");
 * console.log(archive.counts);
 * await copyControlPlane(archive, store, { dryRun: false, report: console.log });
 * archive.close();
 * ```
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { concatBytes, fromBase64, toBase64 } from "../e2e/bytes.ts";
import { MembershipError, verifyLog } from "../e2e/membership.ts";
import { VERSION } from "../version.ts";
import type { CopySource } from "./copy.ts";
import {
  type Blob,
  type BlobMeta,
  check,
  type Member,
  newRoomRow,
  newUserRow,
  type Room,
  type RoomChange,
  type SealedKey,
  sealedKeyRows,
  StoreError,
  type User,
  validateNewBlob,
  validateNewMember,
} from "./store.ts";

/** The archive format this build writes and the newest it reads. */
export const ARCHIVE_FORMAT = 1;

/** The longest line read: an 8 MiB blob in base64 with room to spare. */
const MAX_LINE_BYTES = 64 * 1024 * 1024;

/** The first line of an archive. */
export interface ArchiveHeader {
  unibus_backup: number;
  /** The unibus release that wrote it. */
  unibus: string;
  /** The store it was taken from. */
  source: "sqlite" | "kv";
  created_at: string;
  /** Whether persisted rooms' stored packets follow the control plane. */
  history?: boolean;
}

/** One stored packet of a persisted room's stream, as a backup carries it. */
export interface StoredRoomMessage {
  /** Its sequence in the stream it was read from (restored streams number afresh). */
  seq: number;
  headers: Record<string, string[]>;
  data: Uint8Array;
}

/** Where a backup reads persisted rooms' history from. */
export type HistorySource = (room: Room) => AsyncIterable<StoredRoomMessage>;

/** How many records of each kind an archive holds. */
export interface ArchiveCounts {
  users: number;
  rooms: number;
  keys: number;
  blobs: number;
  /** Bytes of blob data. */
  blobBytes: number;
  /** Stored packets of persisted rooms (0 without history). */
  messages: number;
}

/** An archive that cannot be read, or one that must not be restored; the message says which record and why. */
export class ArchiveError extends Error {
  override name = "ArchiveError";
}

type Line =
  | { t: "user"; user: User }
  | { t: "room"; room: Room; changes: RoomChange[]; members: Member[] }
  | { t: "key"; key: SealedKey }
  | { t: "blob"; blob: BlobMeta; sha256: string; data: string }
  | { t: "msg"; room: string; seq: number; headers: Record<string, string[]>; data: string }
  | { t: "end"; records: number; sha256: string };

const te = new TextEncoder();
const td = new TextDecoder("utf-8", { fatal: true });

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function decodeOrNull(text: unknown): Uint8Array | null {
  try {
    return typeof text === "string" ? fromBase64(text) : null;
  } catch {
    return null;
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

/** What {@linkcode writeArchive} wrote. */
export interface ArchiveWritten extends ArchiveCounts {
  /** Bytes of the whole file. */
  bytes: number;
  /** The end line's digest. */
  sha256: string;
}

/**
 * Writes every record `src` lists into `file`, as one archive. The caller
 * makes the source consistent (a snapshot, or a re-check that nothing
 * changed) and the file safe (new, 0600, renamed into place when done).
 *
 * @example
 * ```ts
 * const file = await Deno.open("cp.unibus-backup.partial", { write: true, createNew: true, mode: 0o600 });
 * const written = await writeArchive(store, file, { source: "sqlite" });
 * file.close();
 * ```
 */
export async function writeArchive(
  src: CopySource,
  file: Deno.FsFile,
  opts: {
    source: "sqlite" | "kv";
    /** Persisted rooms' stored packets, written after everything else. */
    history?: HistorySource;
    progress?: (line: string) => void;
    now?: Date;
  },
): Promise<ArchiveWritten> {
  const hash = createHash("sha256");
  let bytes = 0;
  let records = 0;
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  const flush = async () => {
    for (const p of pending) await writeAll(file, p);
    pending = [];
    pendingBytes = 0;
  };
  const put = async (value: unknown, kind: "record" | "header" | "end" = "record") => {
    const line = te.encode(JSON.stringify(value) + "\n");
    if (kind !== "end") hash.update(line);
    bytes += line.length;
    if (kind === "record") records++;
    pending.push(line);
    pendingBytes += line.length;
    if (pendingBytes >= 1024 * 1024) await flush();
  };
  const header: ArchiveHeader = {
    unibus_backup: ARCHIVE_FORMAT,
    unibus: VERSION,
    source: opts.source,
    created_at: (opts.now ?? new Date()).toISOString(),
    ...(opts.history ? { history: true } : {}),
  };
  await put(header, "header");
  const counts: ArchiveCounts = {
    users: 0,
    rooms: 0,
    keys: 0,
    blobs: 0,
    blobBytes: 0,
    messages: 0,
  };
  for (const user of await src.listUsers()) {
    await put({ t: "user", user });
    counts.users++;
  }
  opts.progress?.(`users: ${counts.users}`);
  const rooms = await src.listRooms();
  for (const room of rooms) {
    const changes = await src.listRoomChanges(room.id);
    const members = await src.listMembers(room.id);
    await put({ t: "room", room, changes, members });
    counts.rooms++;
  }
  opts.progress?.(`rooms (change logs, members): ${counts.rooms}`);
  for (const room of rooms) {
    for (const key of await src.listSealedKeys(room.id)) {
      await put({ t: "key", key });
      counts.keys++;
    }
  }
  opts.progress?.(`sealed keys: ${counts.keys}`);
  const ids = await src.listBlobIds();
  for (const [i, id] of ids.entries()) {
    const b = await src.getBlob(id);
    // Deleted between the listing and the read: not part of this copy.
    if (b === null) continue;
    const { data, ...meta } = b;
    await put({ t: "blob", blob: meta, sha256: sha256Hex(data), data: toBase64(data) });
    counts.blobs++;
    counts.blobBytes += data.length;
    if ((i + 1) % 100 === 0) opts.progress?.(`blobs: ${i + 1}/${ids.length}`);
  }
  opts.progress?.(`blobs: ${counts.blobs} (${counts.blobBytes} bytes)`);
  if (opts.history) {
    for (const room of rooms.filter((r) => r.policy.persist)) {
      let n = 0;
      for await (const m of opts.history(room)) {
        await put({
          t: "msg",
          room: room.id,
          seq: m.seq,
          headers: m.headers,
          data: toBase64(m.data),
        });
        n++;
      }
      counts.messages += n;
      opts.progress?.(`history of ${room.subject}: ${n} messages`);
    }
  }
  const sha256 = hash.digest("hex");
  await put({ t: "end", records, sha256 }, "end");
  await flush();
  return { ...counts, bytes, sha256 };
}

/** A verified blob: its metadata, and its line in the file. */
interface BlobRef {
  meta: BlobMeta;
  line: LineRef;
}

/**
 * An archive read whole and verified (see the module doc), as a
 * {@linkcode CopySource}: everything but blob bytes is held in memory; each
 * blob is read again from the file when asked for and checked against its
 * digest (so a file changed after the check is caught too).
 */
export class VerifiedArchive implements CopySource {
  readonly header: ArchiveHeader;
  readonly counts: ArchiveCounts;
  /** The digest its end line carries (and the file has). */
  readonly sha256: string;
  #file: Deno.FsFile | null;
  #users: User[];
  #rooms: Map<string, { room: Room; changes: RoomChange[]; members: Member[] }>;
  #keys: Map<string, SealedKey[]>;
  #blobs: Map<string, BlobRef>;
  #history: Map<string, { lines: LineRef[]; lastSeq: number }>;

  private constructor(parts: ReadParts & { file: Deno.FsFile }) {
    this.#file = parts.file;
    this.header = parts.header;
    this.sha256 = parts.sha256;
    this.#users = parts.users;
    this.#rooms = parts.rooms;
    this.#keys = parts.keys;
    this.#blobs = parts.blobs;
    this.#history = parts.history;
    let blobBytes = 0;
    for (const b of parts.blobs.values()) blobBytes += b.meta.size;
    this.counts = {
      users: parts.users.length,
      rooms: parts.rooms.size,
      keys: [...parts.keys.values()].reduce((n, k) => n + k.length, 0),
      blobs: parts.blobs.size,
      blobBytes,
      messages: [...parts.history.values()].reduce((n, h) => n + h.lines.length, 0),
    };
  }

  /**
   * Reads and verifies the archive at `path`; {@linkcode ArchiveError} names
   * the first thing wrong. `allowUnsignedRooms` accepts rooms without a
   * membership log (stores older than the signed log), whose members nothing
   * can verify.
   *
   * @example
   * ```ts
   * const archive = await VerifiedArchive.open("cp.unibus-backup");
   * ```
   */
  static async open(
    path: string,
    opts: { allowUnsignedRooms?: boolean; progress?: (line: string) => void } = {},
  ): Promise<VerifiedArchive> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) throw new ArchiveError(`${path}: no such file`);
      throw new ArchiveError(`${path}: cannot read (${(err as Error).message})`);
    }
    try {
      const parts = await readLines(file, path, opts.progress);
      crossCheck(parts, opts.allowUnsignedRooms === true);
      return new VerifiedArchive({ file, ...parts });
    } catch (err) {
      file.close();
      throw err;
    }
  }

  listUsers(): Promise<User[]> {
    return Promise.resolve(this.#users.map((u) => ({ ...u })));
  }

  getUser(signPub: string): Promise<User | null> {
    const u = this.#users.find((x) => x.signPub === signPub);
    return Promise.resolve(u ? { ...u } : null);
  }

  listRooms(): Promise<Room[]> {
    return Promise.resolve([...this.#rooms.values()].map((r) => structuredClone(r.room)));
  }

  getRoom(id: string): Promise<Room | null> {
    const r = this.#rooms.get(id);
    return Promise.resolve(r ? structuredClone(r.room) : null);
  }

  listRoomChanges(roomId: string): Promise<RoomChange[]> {
    return Promise.resolve(structuredClone(this.#rooms.get(roomId)?.changes ?? []));
  }

  listMembers(roomId: string): Promise<Member[]> {
    return Promise.resolve(structuredClone(this.#rooms.get(roomId)?.members ?? []));
  }

  listSealedKeys(roomId: string): Promise<SealedKey[]> {
    return Promise.resolve(structuredClone(this.#keys.get(roomId) ?? []));
  }

  listBlobIds(): Promise<string[]> {
    return Promise.resolve([...this.#blobs.keys()]);
  }

  async getBlob(id: string): Promise<Blob | null> {
    const ref = this.#blobs.get(id);
    if (!ref) return null;
    const line = await this.#line(ref.line) as Extract<Line, { t: "blob" }>;
    return { ...ref.meta, data: fromBase64(line.data) };
  }

  /** The persisted rooms whose stored packets the archive holds. */
  historyRooms(): string[] {
    return [...this.#history.keys()];
  }

  /**
   * A room's stored packets in order, read from the file again.
   *
   * @example
   * ```ts
   * for await (const m of archive.history(room.id)) console.log(m.seq);
   * ```
   */
  async *history(roomId: string): AsyncGenerator<StoredRoomMessage> {
    for (const ref of this.#history.get(roomId)?.lines ?? []) {
      const line = await this.#line(ref) as Extract<Line, { t: "msg" }>;
      yield { seq: line.seq, headers: line.headers, data: fromBase64(line.data) };
    }
  }

  /**
   * The record at `ref`, read again and parsed, if its bytes are still the
   * ones verified: the file is read twice (blobs and packets are not held in
   * memory), and whoever can write it must not change what is restored
   * between the check and the use.
   */
  async #line(ref: LineRef): Promise<Line> {
    if (this.#file === null) throw new ArchiveError("the archive is closed");
    await this.#file.seek(ref.offset, Deno.SeekMode.Start);
    const buf = new Uint8Array(ref.length);
    let got = 0;
    while (got < buf.length) {
      const n = await this.#file.read(buf.subarray(got));
      if (n === null) break;
      got += n;
    }
    if (got !== buf.length || sha256Hex(buf) !== ref.sha256) {
      throw new ArchiveError(
        "the archive file changed after it was verified; nothing more restored",
      );
    }
    return JSON.parse(td.decode(buf)) as Line;
  }

  /** Releases the file. */
  close(): void {
    this.#file?.close();
    this.#file = null;
  }
}

/** Where a verified line is in the file, and what its bytes hash to. */
interface LineRef {
  offset: number;
  length: number;
  sha256: string;
}

interface ReadParts {
  header: ArchiveHeader;
  sha256: string;
  /** Each persisted room's packets, in order, and the last seq taken. */
  history: Map<string, { lines: LineRef[]; lastSeq: number }>;
  users: User[];
  rooms: Map<string, { room: Room; changes: RoomChange[]; members: Member[] }>;
  keys: Map<string, SealedKey[]>;
  blobs: Map<string, BlobRef>;
}

/** Splits the file into lines by byte offset, checking each as it comes. */
async function readLines(
  file: Deno.FsFile,
  path: string,
  progress?: (line: string) => void,
): Promise<ReadParts> {
  const hash: Hash = createHash("sha256");
  const parts: ReadParts = {
    header: null as unknown as ArchiveHeader,
    sha256: "",
    history: new Map(),
    users: [],
    rooms: new Map(),
    keys: new Map(),
    blobs: new Map(),
  };
  let records = 0;
  let ended = false;
  let offset = 0;
  let lineNo = 0;
  let carry: Uint8Array[] = [];
  let carryBytes = 0;
  let lastReport = Date.now();
  const chunk = new Uint8Array(1024 * 1024);
  const onLine = (bytes: Uint8Array, at: number) => {
    lineNo++;
    if (ended) throw new ArchiveError(`${path}: data after the end line (line ${lineNo})`);
    let value: unknown;
    try {
      value = JSON.parse(td.decode(bytes));
    } catch {
      throw new ArchiveError(`${path}: line ${lineNo} is not JSON: the file is damaged`);
    }
    if (lineNo === 1) {
      parts.header = checkHeader(value, path);
    } else if ((value as Line)?.t === "end") {
      const end = value as Extract<Line, { t: "end" }>;
      const digest = hash.copy().digest("hex");
      if (end.sha256 !== digest || end.records !== records) {
        throw new ArchiveError(
          `${path}: checksum mismatch (the end line says ${end.records} records, sha256 ` +
            `${String(end.sha256).slice(0, 12)}…; the file has ${records}, ${
              digest.slice(0, 12)
            }…): the file is damaged or was edited`,
        );
      }
      ended = true;
      parts.sha256 = digest;
    } else {
      records++;
      takeRecord(value, parts, path, lineNo, () => ({
        offset: at,
        length: bytes.length,
        sha256: sha256Hex(bytes),
      }));
    }
    hash.update(bytes);
    hash.update(NEWLINE);
  };
  for (;;) {
    const n = await file.read(chunk);
    if (n === null) break;
    let start = 0;
    for (let i = 0; i < n; i++) {
      if (chunk[i] !== 0x0a) continue;
      const piece = chunk.subarray(start, i);
      const line = carryBytes ? concatBytes(...carry, piece) : piece;
      onLine(line, offset - carryBytes);
      offset += i - start + 1;
      carry = [];
      carryBytes = 0;
      start = i + 1;
    }
    if (start < n) {
      carry.push(chunk.slice(start, n));
      carryBytes += n - start;
      offset += n - start;
      if (carryBytes > MAX_LINE_BYTES) {
        throw new ArchiveError(`${path}: line ${lineNo + 1} is longer than any archive writes`);
      }
    }
    if (progress && Date.now() - lastReport > 2000) {
      progress(`verifying: ${offset} bytes read`);
      lastReport = Date.now();
    }
  }
  if (lineNo === 0 && carryBytes === 0) throw new ArchiveError(`${path}: empty file`);
  if (!ended) {
    throw new ArchiveError(
      `${path}: truncated (no end line after ${records} records): restore refuses a partial archive`,
    );
  }
  if (carryBytes) throw new ArchiveError(`${path}: data after the end line`);
  return parts;
}

const NEWLINE = new Uint8Array([0x0a]);

function checkHeader(value: unknown, path: string): ArchiveHeader {
  const h = value as Partial<ArchiveHeader> | null;
  if (typeof h !== "object" || h === null || typeof h.unibus_backup !== "number") {
    throw new ArchiveError(`${path}: not a unibus backup archive`);
  }
  if (h.unibus_backup > ARCHIVE_FORMAT || !Number.isInteger(h.unibus_backup)) {
    throw new ArchiveError(
      `${path}: archive format ${h.unibus_backup} was written by a newer unibus ` +
        `(${String(h.unibus)}); this one (${VERSION}) reads format ${ARCHIVE_FORMAT}`,
    );
  }
  if (h.source !== "sqlite" && h.source !== "kv") {
    throw new ArchiveError(`${path}: the header names no source store`);
  }
  return h as ArchiveHeader;
}

/** Checks one record by the store's input rules and files it. */
function takeRecord(
  value: unknown,
  parts: ReadParts,
  path: string,
  lineNo: number,
  /** Where the line is: asked only for the lines read again later (blobs, packets). */
  lineRef: () => LineRef,
): void {
  const line = value as Line;
  const where = `${path}: line ${lineNo}`;
  try {
    switch (line?.t) {
      case "user": {
        const u = line.user;
        const row = newUserRow(u);
        if (u.status !== "active" && u.status !== "revoked") {
          throw new ArchiveError(`${where}: user status "${String(u.status)}" is unknown`);
        }
        check.count("createdAt", u.createdAt);
        if (u.maxConnections !== undefined) {
          check.maxConnections("maxConnections", u.maxConnections);
        }
        parts.users.push({
          ...row,
          status: u.status,
          createdAt: u.createdAt,
          ...(u.maxConnections === undefined ? {} : { maxConnections: u.maxConnections }),
        });
        return;
      }
      case "room": {
        const { room, changes, members } = line;
        const row = newRoomRow(room);
        check.count("epoch", room.epoch);
        check.count("createdAt", room.createdAt);
        if (!Array.isArray(changes) || !Array.isArray(members)) {
          throw new ArchiveError(`${where}: room ${room.id} lacks its changes or members`);
        }
        changes.forEach((c, i) => {
          if (c?.seq !== i || typeof c.text !== "string" || typeof c.sig !== "string") {
            throw new ArchiveError(`${where}: room ${room.id} change ${i} is malformed`);
          }
        });
        for (const m of members) {
          validateNewMember({ ...m, roomId: room.id });
          if (m.roomId !== room.id) {
            throw new ArchiveError(`${where}: a member of room ${room.id} names another room`);
          }
          check.count("addedAt", m.addedAt);
        }
        if (parts.rooms.has(room.id)) throw new ArchiveError(`${where}: room ${room.id} twice`);
        parts.rooms.set(room.id, {
          room: { ...row, createdAt: room.createdAt, epoch: room.epoch },
          changes: changes.map((c) => ({ seq: c.seq, text: c.text, sig: c.sig })),
          members: members.map((m) => ({ ...m })),
        });
        return;
      }
      case "key": {
        const k = line.key;
        const [row] = sealedKeyRows(k.roomId, k.epoch, [k]);
        check.count("createdAt", k.createdAt);
        const list = parts.keys.get(k.roomId) ?? [];
        list.push(row);
        parts.keys.set(k.roomId, list);
        return;
      }
      case "blob": {
        const meta = line.blob;
        let data: Uint8Array;
        try {
          data = fromBase64(line.data);
        } catch {
          throw new ArchiveError(`${where}: blob ${String(meta?.id)}'s data is not base64`);
        }
        validateNewBlob({ ...meta, data });
        check.count("createdAt", meta.createdAt);
        if (data.length !== meta.size || sha256Hex(data) !== line.sha256) {
          throw new ArchiveError(
            `${where}: blob ${meta.id}'s bytes do not match its size and digest`,
          );
        }
        if (parts.blobs.has(meta.id)) throw new ArchiveError(`${where}: blob ${meta.id} twice`);
        parts.blobs.set(meta.id, {
          meta: {
            id: meta.id,
            roomId: meta.roomId,
            owner: meta.owner,
            size: meta.size,
            createdAt: meta.createdAt,
          },
          line: lineRef(),
        });
        return;
      }
      case "msg": {
        if (!parts.header.history) {
          throw new ArchiveError(`${where}: a stored packet in an archive without history`);
        }
        const h = parts.history.get(line.room) ?? { lines: [], lastSeq: 0 };
        if (
          typeof line.room !== "string" || !Number.isSafeInteger(line.seq) || line.seq <= h.lastSeq
        ) {
          throw new ArchiveError(`${where}: a stored packet out of order or without its room`);
        }
        const headersOk = typeof line.headers === "object" && line.headers !== null &&
          Object.values(line.headers).every((vs) =>
            Array.isArray(vs) && vs.every((v) => typeof v === "string")
          );
        if (!headersOk || decodeOrNull(line.data) === null) {
          throw new ArchiveError(`${where}: a stored packet of room ${line.room} is malformed`);
        }
        h.lines.push(lineRef());
        h.lastSeq = line.seq;
        parts.history.set(line.room, h);
        return;
      }
      default:
        throw new ArchiveError(`${where}: unknown record type "${String(line?.t)}"`);
    }
  } catch (err) {
    if (err instanceof ArchiveError) throw err;
    if (err instanceof StoreError || err instanceof TypeError) {
      throw new ArchiveError(`${where}: ${err.message}`);
    }
    throw err;
  }
}

/** The checks across records: nothing twice, nothing orphaned, every log proves its room. */
function crossCheck(parts: ReadParts, allowUnsignedRooms: boolean): void {
  const users = new Set<string>();
  for (const u of parts.users) {
    if (users.has(u.signPub)) throw new ArchiveError(`user ${u.signPub} appears twice`);
    users.add(u.signPub);
  }
  const subjects = new Set<string>();
  for (const { room, changes, members } of parts.rooms.values()) {
    if (subjects.has(room.subject)) {
      throw new ArchiveError(`subject ${room.subject} belongs to two rooms`);
    }
    subjects.add(room.subject);
    if (changes.length === 0) {
      if (allowUnsignedRooms) continue;
      throw new ArchiveError(
        `room ${room.id} has no signed membership log, so nothing proves who may read it ` +
          "(a store older than the log); restore it only with --allow-unsigned-rooms",
      );
    }
    provenByLog(room, changes, members);
  }
  for (const [roomId, keys] of parts.keys) {
    if (!parts.rooms.has(roomId)) {
      throw new ArchiveError(`sealed keys for room ${roomId}, which the archive does not hold`);
    }
    const seen = new Set<string>();
    for (const k of keys) {
      const id = `${k.epoch}/${k.recipient}`;
      if (seen.has(id)) throw new ArchiveError(`sealed key ${roomId}/${id} appears twice`);
      seen.add(id);
    }
  }
  for (const roomId of parts.history.keys()) {
    if (!parts.rooms.get(roomId)?.room.policy.persist) {
      throw new ArchiveError(
        `history for room ${roomId}, which the archive lacks or does not persist`,
      );
    }
  }
  for (const b of parts.blobs.values()) {
    if (!parts.rooms.has(b.meta.roomId)) {
      throw new ArchiveError(
        `blob ${b.meta.id} is in room ${b.meta.roomId}, which the archive lacks`,
      );
    }
  }
}

/** Refuses a room whose stored shape is not exactly what its signed log proves. */
function provenByLog(room: Room, changes: RoomChange[], members: Member[]): void {
  let state;
  try {
    state = verifyLog(room.id, changes.map((c) => ({ text: c.text, sig: c.sig })));
  } catch (err) {
    if (!(err instanceof MembershipError)) throw err;
    throw new ArchiveError(`room ${room.id}: its membership log does not verify: ${err.message}`);
  }
  const p = state.policy;
  const q = room.policy;
  if (
    state.subject !== room.subject || p.encrypt !== q.encrypt || p.sign !== q.sign ||
    p.persist !== q.persist
  ) {
    throw new ArchiveError(`room ${room.id}: subject or policy differs from its signed log`);
  }
  if (state.epoch !== room.epoch) {
    throw new ArchiveError(
      `room ${room.id}: epoch ${room.epoch} differs from its signed log's ${state.epoch}`,
    );
  }
  const stored = new Map(members.map((m) => [m.signPub, m.role]));
  const proven = new Map([...state.members.values()].map((m) => [m.signPub, m.role]));
  for (const [key, role] of stored) {
    if (proven.get(key) !== role) {
      throw new ArchiveError(
        `room ${room.id}: member ${key} (${role}) is not what its signed log proves`,
      );
    }
  }
  for (const key of proven.keys()) {
    if (!stored.has(key)) {
      throw new ArchiveError(`room ${room.id}: member ${key} of its signed log is missing`);
    }
  }
}
