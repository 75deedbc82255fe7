/**
 * The client's persisted receive state: the replay window of every room
 * (receiving chain positions and closed sessions) kept in a file, so that a
 * restarted agent still refuses packets it already handled. Without it the
 * window lives in memory and a restart forgets it (the time rule of
 * protocol.md §2.9 then refuses whatever was signed before the restart).
 *
 * The file is JSON, written 0600 through a temp file and a rename, so a crash
 * leaves the previous state or the new one, never half of one. It holds
 * chain keys, which open this and later messages of those sessions: no more
 * than the identity file next to it can (it opens the sealed room keys).
 *
 * @module
 */

import { resolve } from "node:path";
import { rename, rm } from "node:fs/promises";
import { privateTempPath, writePrivateTemp } from "../fs/private_file.ts";
import { isNotFound } from "../platform/mod.ts";
import { readRegularFile } from "../fs/read_regular.ts";
import type { ReceiveSnapshot } from "./room_session.ts";

/** The most receiving chains the file keeps, over all rooms (newest kept). */
export const MAX_STATE_CHAINS = 8192;
/** The most closed sessions the file keeps, over all rooms (newest kept). */
export const MAX_STATE_RETIRED = 8192;
/** A file larger than this is refused when read (the bounds above keep it near 2 MiB). */
const MAX_STATE_BYTES = 8 * 1024 * 1024;
/** How long after a delivery the state is written (a crash loses at most this much). */
const WRITE_DELAY_MS = 100;

interface StateFile {
  v: 1;
  signPub: string;
  rooms: Record<string, ReceiveSnapshot>;
}

/** Thrown when the state file cannot be read or is not this identity's. */
export class ReceiveStateError extends Error {
  override name = "ReceiveStateError";
}

/**
 * Reads the state file at `path` (absent: empty) and returns a handle that
 * writes it back a moment after each {@linkcode ReceiveState.touch}.
 *
 * @example
 * ```ts
 * const state = await openReceiveState("agent.state", identity.signPubHex);
 * state.source(() => snapshotsOfLoadedRooms());
 * state.touch(); // after a delivery
 * await state.close();
 * ```
 */
export async function openReceiveState(path: string, signPub: string): Promise<ReceiveState> {
  let rooms: Record<string, ReceiveSnapshot> = {};
  let text: string | null = null;
  try {
    // Never blocks: a FIFO (or any non-regular file) at the path is refused
    // at once instead of hanging the client until something writes to it.
    const { bytes } = await readRegularFile(path, MAX_STATE_BYTES);
    text = new TextDecoder().decode(bytes);
  } catch (err) {
    if (!isNotFound(err)) {
      throw new ReceiveStateError(`cannot read receive state ${path}: ${(err as Error).message}`);
    }
  }
  if (text !== null) {
    // Fail closed: a state that is not ours, or not whole, would accept
    // replays it should refuse; the operator removes it knowingly.
    let parsed: StateFile;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new ReceiveStateError(`receive state ${path} is not valid JSON`);
    }
    if (parsed?.v !== 1 || typeof parsed.rooms !== "object" || parsed.rooms === null) {
      throw new ReceiveStateError(`receive state ${path} is not a unibus receive state`);
    }
    if (parsed.signPub !== signPub) {
      throw new ReceiveStateError(`receive state ${path} belongs to another identity`);
    }
    const bad = badRooms(parsed.rooms);
    if (bad) throw new ReceiveStateError(`receive state ${path}: ${bad}`);
    rooms = parsed.rooms;
  }
  return new ReceiveState(path, signPub, rooms);
}

/** A persisted receive state; create it with {@linkcode openReceiveState}. */
export class ReceiveState {
  #path: string;
  #signPub: string;
  #saved: Record<string, ReceiveSnapshot>;
  #collect: () => Map<string, ReceiveSnapshot> = () => new Map();
  #timer: ReturnType<typeof setTimeout> | null = null;
  #writing: Promise<void> = Promise.resolve();
  #forgotten = new Set<string>();
  #onWriteError: (err: Error) => void = () => {};

  constructor(
    path: string,
    signPub: string,
    saved: Record<string, ReceiveSnapshot>,
  ) {
    this.#path = resolve(path);
    this.#signPub = signPub;
    this.#saved = saved;
  }

  /** Where each write takes the current state of the loaded rooms from. */
  source(collect: () => Map<string, ReceiveSnapshot>): void {
    this.#collect = collect;
  }

  /**
   * Who hears of a scheduled write that failed (the window it held is then
   * only in memory: a restart would refuse what it should have accepted, or
   * accept a replay); the next write tries again.
   */
  onWriteError(report: (err: Error) => void): void {
    this.#onWriteError = report;
  }

  /** What the previous process saved for a room, if anything. */
  room(roomId: string): ReceiveSnapshot | undefined {
    return Object.hasOwn(this.#saved, roomId) ? this.#saved[roomId] : undefined;
  }

  /** Drops a room this identity left or lost from the next write. */
  forget(roomId: string): void {
    this.#forgotten.add(roomId);
    delete this.#saved[roomId];
    this.touch();
  }

  /** Schedules a write (coalesced: at most one per {@link WRITE_DELAY_MS}). */
  touch(): void {
    if (this.#timer !== null) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#writing = this.#writing.then(() => this.#write()).catch((err) =>
        this.#onWriteError(err instanceof Error ? err : new Error(String(err)))
      );
    }, WRITE_DELAY_MS);
  }

  /** Writes now; resolves when the file is in place. */
  async flush(): Promise<void> {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    this.#writing = this.#writing.then(() => this.#write());
    await this.#writing;
  }

  /** Writes the last state and stops. */
  async close(): Promise<void> {
    await this.flush();
  }

  async #write(): Promise<void> {
    const rooms: Record<string, ReceiveSnapshot> = { ...this.#saved };
    for (const [id, snap] of this.#collect()) if (!this.#forgotten.has(id)) rooms[id] = snap;
    this.#saved = bound(rooms);
    const data = new TextEncoder().encode(
      JSON.stringify({ v: 1, signPub: this.#signPub, rooms: this.#saved } satisfies StateFile),
    );
    const tmp = privateTempPath(this.#path);
    try {
      await writePrivateTemp(tmp, data);
      await rename(tmp, this.#path);
    } finally {
      // Absent once the rename moved it into place: nothing to remove then.
      await rm(tmp, { force: true }).catch(() => {});
    }
  }
}

const ROOM_ID = /^[0-9a-f]{32}$/;
const CHAIN_ID = /^(0|[1-9]\d{0,9})\/[0-9a-f]{64}\/[0-9a-f]{32}$/;
const BASE64 = /^[A-Za-z0-9+/]{43}=$/;
const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const isIndex = (v: unknown, min: number) =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= min;

// What is wrong with a state file's rooms, or null when every entry has the
// shape this library writes. Checked whole before anything is used: an entry
// of the wrong type must neither throw a TypeError later nor be half trusted.
function badRooms(rooms: Record<string, unknown>): string | null {
  for (const [id, snap] of Object.entries(rooms)) {
    if (!ROOM_ID.test(id)) return `room key ${JSON.stringify(id)} is not a room id`;
    if (!isRecord(snap) || !Array.isArray(snap.chains) || !Array.isArray(snap.retired)) {
      return `room ${id} is not {chains: [...], retired: [...]}`;
    }
    for (const extra of Object.keys(snap)) {
      if (extra !== "chains" && extra !== "retired") return `room ${id} has a field ${extra}`;
    }
    for (const c of snap.chains as unknown[]) {
      if (
        !isRecord(c) || typeof c.id !== "string" || !CHAIN_ID.test(c.id) || !isIndex(c.at, -1) ||
        (c.ck !== undefined && (typeof c.ck !== "string" || !BASE64.test(c.ck))) ||
        (c.frame !== undefined && !isIndex(c.frame, 0)) ||
        Object.keys(c).some((k) => !["id", "at", "ck", "frame"].includes(k))
      ) {
        return `room ${id} has a malformed receiving chain ${JSON.stringify(c)?.slice(0, 120)}`;
      }
    }
    for (const r of snap.retired as unknown[]) {
      if (typeof r !== "string" || !CHAIN_ID.test(r)) {
        return `room ${id} has a malformed closed session ${JSON.stringify(r)?.slice(0, 120)}`;
      }
    }
  }
  return null;
}

// Newest entries win: each room's lists are oldest first, so the budget is
// spent from their ends, room by room, until it runs out.
function bound(rooms: Record<string, ReceiveSnapshot>): Record<string, ReceiveSnapshot> {
  let chains = MAX_STATE_CHAINS;
  let retired = MAX_STATE_RETIRED;
  const out: Record<string, ReceiveSnapshot> = {};
  for (const [id, snap] of Object.entries(rooms)) {
    const c = snap.chains.slice(Math.max(0, snap.chains.length - chains));
    const r = snap.retired.slice(Math.max(0, snap.retired.length - retired));
    chains -= c.length;
    retired -= r.length;
    if (c.length > 0 || r.length > 0) out[id] = { chains: c, retired: r };
  }
  return out;
}
