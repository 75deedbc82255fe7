/**
 * Upgrading a data directory made before room streams had an account of
 * their own: each `ROOM_<id>` stream left in the control plane's account is
 * copied, message by message in sequence order, into a stream of the same
 * name in the rooms' account (capturing the room's wire subject), then
 * deleted. Nothing is ever held in two places as "the" history: readers only
 * ever see the new stream, which grows from the old one's first message on.
 *
 * Safe to stop and to run on several nodes at once: each copied message
 * carries the old sequence (`Unibus-Moved-Seq`), a copy resumes after the
 * last one found in the new stream, and every copy is published with the
 * new stream's expected last sequence, so two copiers cannot both append
 * the same message (the loser re-reads where to resume). The old stream is
 * deleted only once its last message is in the new one.
 *
 * @module
 */

import {
  jetstream,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstreamManager,
  type StoredMsg,
} from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { persistedRoomSubject } from "../../lib/auth/acl.ts";
import type { Logger } from "../../lib/log.ts";
import { createRoomStream } from "./streams.ts";

/** The header a moved message keeps its old stream sequence in. */
export const MOVED_SEQ_HEADER = "Unibus-Moved-Seq";

/** What {@linkcode moveRoomStreams} did. */
export interface MoveReport {
  /** Streams moved and deleted from the control plane's account. */
  streams: number;
  /** Messages copied. */
  messages: number;
}

/** Where and how room streams are moved. */
export interface MoveOptions {
  /** serve's connection in the control plane's account (where old streams are). */
  ctrl: NatsConnection;
  /** serve's connection in the rooms' account (where they go). */
  rooms: NatsConnection;
  /** The new streams' size limit and replicas (as for a new persisted room). */
  maxBytes?: number;
  replicas?: number;
  log: Logger;
}

const isNotFound = (err: unknown) =>
  err instanceof JetStreamApiError &&
  (err.code === JetStreamApiCodes.NoMessageFound || err.code === JetStreamApiCodes.StreamNotFound);

/**
 * Moves every room stream still in the control plane's account into the
 * rooms' account. Resolves with what it moved; throws on the first error it
 * cannot resume from (the caller tries again later).
 *
 * @example
 * ```ts
 * const moved = await moveRoomStreams({ ctrl: conn.nc, rooms: roomsConn.nc, log });
 * ```
 */
export async function moveRoomStreams(opts: MoveOptions): Promise<MoveReport> {
  const ctrlJsm = await jetstreamManager(opts.ctrl, { checkAPI: false });
  const old: string[] = [];
  for await (const name of ctrlJsm.streams.names()) {
    if (/^ROOM_[A-Za-z0-9_-]+$/.test(name)) old.push(name);
  }
  const report: MoveReport = { streams: 0, messages: 0 };
  for (const name of old.sort()) {
    report.messages += await moveOne(name, opts);
    try {
      await ctrlJsm.streams.delete(name);
    } catch (err) {
      if (!isNotFound(err)) throw err; // another node finished first
    }
    report.streams++;
  }
  if (report.streams > 0) opts.log.info("room streams moved to the rooms' account", { ...report });
  return report;
}

async function moveOne(name: string, opts: MoveOptions): Promise<number> {
  const roomId = name.slice("ROOM_".length);
  const wire = persistedRoomSubject(roomId);
  const ctrlJsm = await jetstreamManager(opts.ctrl, { checkAPI: false });
  const roomsJsm = await jetstreamManager(opts.rooms, { checkAPI: false });
  const js = jetstream(opts.rooms);
  // Same limits as a new persisted room; an existing one (a resumed move) is kept.
  await createRoomStream(opts.rooms, { id: roomId, subject: wire }, opts.maxBytes, opts.replicas)
    .catch(async (err) => {
      const exists = await roomsJsm.streams.info(name).then(() => true, () => false);
      if (!exists) throw err;
    });
  const source = await ctrlJsm.streams.info(name);
  let copied = 0;
  for (let attempt = 0; attempt < 5; attempt++) {
    // Where to resume: after the old sequence of the last message moved.
    const target = await roomsJsm.streams.info(name);
    let lastTarget = target.state.last_seq;
    let next = source.state.first_seq;
    if (target.state.messages > 0) {
      const last = await roomsJsm.streams.getMessage(name, { last_by_subj: wire })
        .catch((err) => isNotFound(err) ? null : Promise.reject(err));
      const moved = Number(last?.header?.get(MOVED_SEQ_HEADER));
      if (Number.isSafeInteger(moved) && moved > 0) next = Math.max(next, moved + 1);
    }
    try {
      for (let seq = next; seq <= source.state.last_seq; seq++) {
        let m: StoredMsg | null;
        try {
          m = await ctrlJsm.streams.getMessage(name, { seq });
        } catch (err) {
          if (isNotFound(err)) continue; // deleted, or aged out meanwhile
          throw err;
        }
        if (!m) continue;
        const h = headers();
        for (const [k, vs] of m.header ?? []) {
          // The old id's duplicate window would not apply across streams anyway.
          if (k === "Nats-Msg-Id") continue;
          for (const v of vs) h.append(k, v);
        }
        h.set(MOVED_SEQ_HEADER, String(seq));
        const ack = await js.publish(wire, m.data, {
          headers: h,
          expect: { lastSequence: lastTarget, streamName: name },
        });
        lastTarget = ack.seq;
        copied++;
        if (copied % 10_000 === 0) {
          opts.log.info("moving a room stream", {
            stream: name,
            copied,
            of: source.state.messages,
          });
        }
      }
      return copied;
    } catch (err) {
      // Another copier appended first: re-read where to resume.
      if (
        err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence
      ) {
        continue;
      }
      throw err;
    }
  }
  throw new Error(`moving ${name}: other copiers kept appending; try again`);
}

/**
 * Moves old room streams in the background until none is left: at once,
 * then every 5 s while a move fails (in a cluster, a stream of three
 * replicas cannot be made until all three nodes are up). Stops when asked.
 *
 * @example
 * ```ts
 * const mover = startRoomStreamMover({ ctrl: conn.nc, rooms: roomsConn.nc, log });
 * await mover.stop();
 * ```
 */
export function startRoomStreamMover(opts: MoveOptions): { stop(): Promise<void> } {
  const stopped = new AbortController();
  const done = (async () => {
    for (let attempt = 1; !stopped.signal.aborted; attempt++) {
      try {
        await moveRoomStreams(opts);
        return;
      } catch (err) {
        if (stopped.signal.aborted) return;
        // Once per minute at most: a cluster waiting for its third node would
        // otherwise log every try.
        if (attempt === 1 || attempt % 12 === 0) {
          opts.log.warn("room streams not moved yet; trying again", { error: err, attempt });
        }
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 5000);
        stopped.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          resolve();
        }, { once: true });
      });
    }
  })();
  return {
    async stop() {
      stopped.abort();
      await done;
    },
  };
}
