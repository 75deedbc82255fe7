/**
 * Every persisted room has its stream: a room that reached the store without
 * going through room creation (restored from a backup, copied by
 * `migrate-to-kv`, or whose node lost its JetStream disk) would otherwise
 * take messages its members believe stored while nothing keeps them: their
 * publishes are never acknowledged, and history stays empty.
 *
 * At start every room is checked; afterwards each room the store's change
 * feed names is checked a few seconds later (room creation makes the stream
 * itself and, if that fails, takes the room back: waiting lets it finish
 * first), and a room still without a stream is tried again every half
 * minute. A stream is created only where none exists, never replaced (an
 * existing one keeps its configuration and history), and taken back if its
 * room was deleted meanwhile, so the keeper never leaves an orphan holding a
 * share of JetStream's storage.
 *
 * @module
 */

import { JetStreamApiCodes, JetStreamApiError, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { roomStreamName } from "../../lib/auth/acl.ts";
import type { Logger } from "../../lib/log.ts";
import type { Room, Store } from "../../lib/store/store.ts";
import { createRoomStream, deleteRoomStream } from "./streams.ts";

/** What the keeper needs: the store, serve's rooms'-account connection, the stream shape. */
export interface StreamKeeperOptions {
  store: Store;
  /** serve's connection in the rooms' account, where room streams live. */
  nc: NatsConnection;
  maxBytes: number;
  replicas: number;
  log: Logger;
  /** How long after a change a room is checked (room creation goes first). */
  settleMs?: number;
  /** How often rooms still without a stream are tried again. */
  retryMs?: number;
}

/**
 * Creates the stream of `room` if it has none; true if it made one.
 *
 * @example
 * ```ts
 * if (await ensureRoomStream(nc, room, 64 * 1024 * 1024, 1)) log.info("stream made");
 * ```
 */
export async function ensureRoomStream(
  nc: NatsConnection,
  room: Room,
  maxBytes: number,
  replicas: number,
): Promise<boolean> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  try {
    await jsm.streams.info(roomStreamName(room.id));
    return false;
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) {
      throw err;
    }
  }
  await createRoomStream(nc, room, maxBytes, replicas);
  return true;
}

/** The names of the streams in `nc`'s account. */
async function streamNames(nc: NatsConnection): Promise<Set<string>> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const names = new Set<string>();
  for await (const name of jsm.streams.names()) names.add(name);
  return names;
}

/**
 * Starts the keeper; `stop()` ends it and its change feed.
 *
 * @example
 * ```ts
 * const keeper = startRoomStreamKeeper({ store, nc: roomsConn.nc, maxBytes, replicas: 1, log });
 * await keeper.stop();
 * ```
 */
export function startRoomStreamKeeper(opts: StreamKeeperOptions): { stop(): Promise<void> } {
  const settleMs = opts.settleMs ?? 5000;
  const retryMs = opts.retryMs ?? 30_000;
  /** Rooms to check, by id; "all" re-reads every room. */
  const due = new Set<string>();
  let all = true;
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let running: Promise<void> = Promise.resolve();
  const warned = new Set<string>();

  const check = async (room: Room): Promise<boolean> => {
    if (!room.policy.persist) return true;
    try {
      if (!await ensureRoomStream(opts.nc, room, opts.maxBytes, opts.replicas)) return true;
      // Deleted while its stream was being made: take the stream back.
      if ((await opts.store.getRoom(room.id)) === null) {
        await deleteRoomStream(opts.nc, room.id);
        return true;
      }
      opts.log.info("persisted room had no stream; created", {
        room: room.id,
        subject: room.subject,
      });
      warned.delete(room.id);
      return true;
    } catch (err) {
      if (!warned.has(room.id)) {
        warned.add(room.id);
        opts.log.warn("persisted room has no stream; its messages are not stored until it has", {
          room: room.id,
          error: err,
        });
      }
      return false;
    }
  };

  const pass = async () => {
    const ids = [...due];
    const everything = all;
    due.clear();
    all = false;
    try {
      const rooms = everything
        ? await opts.store.listRooms()
        : (await Promise.all(ids.map((id) => opts.store.getRoom(id)))).filter((r) => r !== null);
      // Every room at once (each start, on every node): one listing of the
      // streams there are, then a request only for a room without one.
      const existing = everything ? await streamNames(opts.nc) : null;
      for (const room of rooms) {
        if (stopped) return;
        if (existing?.has(roomStreamName(room.id))) continue;
        if (!await check(room)) due.add(room.id);
      }
    } catch (err) {
      // The store is unreachable: everything asked for is asked again.
      for (const id of ids) due.add(id);
      all ||= everything;
      opts.log.warn("room streams not checked; trying again", { error: err });
    }
    if (due.size > 0 || all) schedule(retryMs);
  };

  let timerAt = Infinity;
  const schedule = (ms: number) => {
    const at = Date.now() + ms;
    if (stopped || at >= timerAt) return;
    if (timer !== null) clearTimeout(timer);
    timerAt = at;
    timer = setTimeout(() => {
      timer = null;
      timerAt = Infinity;
      running = running.then(pass);
    }, ms);
  };

  const watch = opts.store.watchChanges((change) => {
    if (change.kind === "room") due.add(change.roomId);
    else if (change.kind === "all") all = true;
    else return;
    schedule(settleMs);
  });
  running = pass();

  return {
    async stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      await watch.stop();
      await running;
    },
  };
}
