/**
 * A persisted room's stored packets, read out of its stream for a backup and
 * appended to a new stream by a restore (`unibus backup|restore
 * --with-history`), over a connection in the rooms' account. The packets are
 * end-to-end sealed and signed: neither side opens them, and a reader of the
 * restored history verifies each one as it did the original.
 *
 * @module
 */

import {
  jetstream,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstreamManager,
  type StreamInfo,
} from "@nats-io/jetstream";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { persistedRoomSubject, roomStreamName } from "../../lib/auth/acl.ts";
import type { StoredRoomMessage } from "../../lib/store/archive.ts";
import { createRoomStream, type StreamRoom } from "./streams.ts";

const notFound = (err: unknown) =>
  err instanceof JetStreamApiError &&
  (err.code === JetStreamApiCodes.NoMessageFound || err.code === JetStreamApiCodes.StreamNotFound);

/** A room's stream already holds messages: a restore never appends history to them. */
export class HistoryNotEmptyError extends Error {
  override name = "HistoryNotEmptyError";
}

/**
 * The messages of `roomId`'s stream from its first to the last it held when
 * called, in order (none if it has no stream). Messages published meanwhile
 * are not included; deleted or aged-out ones are skipped.
 *
 * @example
 * ```ts
 * for await (const m of readRoomHistory(roomsNc, room.id)) console.log(m.seq, m.data.length);
 * ```
 */
export async function* readRoomHistory(
  nc: NatsConnection,
  roomId: string,
): AsyncGenerator<StoredRoomMessage> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const name = roomStreamName(roomId);
  let info: StreamInfo;
  try {
    info = await jsm.streams.info(name);
  } catch (err) {
    if (notFound(err)) return;
    throw err;
  }
  if (info.state.messages === 0) return;
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    let m;
    try {
      m = await jsm.streams.getMessage(name, { seq });
    } catch (err) {
      if (notFound(err)) continue;
      throw err;
    }
    if (!m) continue;
    const headers: Record<string, string[]> = {};
    for (const [k, vs] of m.header ?? []) headers[k] = [...vs];
    yield { seq, headers, data: m.data };
  }
}

/**
 * Appends `messages` in order to `room`'s stream, which must hold none. With
 * `create`, a missing stream is made with those limits (a stopped node's
 * store); without, it is waited for up to `waitMs` (a running node makes
 * the stream of a restored room itself, with its own limits and replicas).
 * Each append names the stream's expected last sequence, so nothing is ever
 * stored twice or out of order. Returns how many were appended.
 *
 * @example
 * ```ts
 * const n = await writeRoomHistory(roomsNc, room, archive.history(room.id), { waitMs: 60_000 });
 * ```
 */
export async function writeRoomHistory(
  nc: NatsConnection,
  room: StreamRoom,
  messages: AsyncIterable<StoredRoomMessage>,
  opts: { create?: { maxBytes: number; replicas: number }; waitMs?: number },
): Promise<number> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const name = roomStreamName(room.id);
  const info = async () =>
    await jsm.streams.info(name).catch((err) => notFound(err) ? null : Promise.reject(err));
  let stream = await info();
  if (stream === null && opts.create) {
    await createRoomStream(nc, room, opts.create.maxBytes, opts.create.replicas);
    stream = await info();
  }
  const deadline = Date.now() + (opts.waitMs ?? 0);
  while (stream === null && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    stream = await info();
  }
  if (stream === null) {
    throw new Error(
      `room ${room.id} has no stream on the target; is serve running there (it makes the ` +
        "stream of a restored persisted room within seconds)?",
    );
  }
  if (stream.state.messages > 0) {
    throw new HistoryNotEmptyError(
      `room ${room.id}'s stream already holds ${stream.state.messages} messages; its history ` +
        "was not restored (a restore never mixes two histories)",
    );
  }
  const js = jetstream(nc);
  const subject = persistedRoomSubject(room.id);
  let last = stream.state.last_seq;
  let appended = 0;
  for await (const m of messages) {
    const h = natsHeaders();
    for (const [k, vs] of Object.entries(m.headers)) {
      // `Nats-*` headers are JetStream's instructions to the stream (an id's
      // duplicate window, expected sequences, rollups that purge, TTLs),
      // about the original stream or none: an archive is only as
      // trustworthy as its file, so none of them is obeyed here.
      if (k.toLowerCase().startsWith("nats-")) continue;
      for (const v of vs) h.append(k, v);
    }
    const ack = await js.publish(subject, m.data, {
      headers: h,
      expect: { lastSequence: last, streamName: name },
    });
    last = ack.seq;
    appended++;
  }
  return appended;
}
