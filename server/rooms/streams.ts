/**
 * The JetStream stream behind a `persist` room: it keeps the room's
 * ciphertext so a member who was offline can read what they missed. Streams
 * live in the rooms' account, where `serve` alone creates and deletes them
 * (over its connection in that account); members reach them only through
 * the users' account's two service imports (store a packet, direct get).
 *
 * @module
 */

import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { nanos, type NatsConnection } from "@nats-io/transport-node";
import { persistedRoomSubject, roomStreamName } from "../../lib/auth/acl.ts";
import { DEFAULT_LIMITS } from "../limits.ts";

/** How long a persisted room keeps its history. */
export const ROOM_STREAM_MAX_AGE_MS = 30 * 24 * 60 * 60 * 1000;

/**
 * JetStream has no room left to reserve for another stream (its
 * `max_file_store` is taken by existing streams' reservations).
 */
export class StreamStorageFullError extends Error {
  override name = "StreamStorageFullError";
}

/**
 * JetStream cannot place the stream's replicas: in nats-server 2.10 a new
 * R3 stream needs three live peers, so this is what a persisted room's
 * creation meets while a node of the cluster is down.
 */
export class StreamPlacementError extends Error {
  override name = "StreamPlacementError";
}

/** The room facts a stream depends on. */
export interface StreamRoom {
  id: string;
  subject: string;
}

/** Creates and deletes room streams; an interface so routes can be tested without JetStream. */
export interface RoomStreams {
  /** Creates the room's stream; succeeds if an identical one exists. */
  create(room: StreamRoom): Promise<string>;
  /** Deletes the room's stream; a missing stream is not an error. */
  delete(roomId: string): Promise<void>;
}

/**
 * The stream configuration of a persisted room: its one wire subject, file
 * storage, 30 days of history with the oldest dropped first, at most
 * `maxBytes` (`--room-stream-max-bytes`; JetStream reserves that much of its
 * store for every stream, so it also caps how many persisted rooms fit in the
 * node: 1 GiB per room once let ~60 rooms fill a node), and as many
 * replicas as the control plane (1 on a single node, 3 in a cluster: an R1
 * stream on a node that dies takes the room's history and every message
 * published meanwhile with it).
 *
 * @example
 * ```ts
 * const cfg = roomStreamConfig({ id: "0123456789abcdef0123456789abcdef", subject: "chat.ops" });
 * cfg.name; // "ROOM_0123456789abcdef0123456789abcdef"
 * ```
 */
export function roomStreamConfig(
  room: StreamRoom,
  maxBytes: number = DEFAULT_LIMITS.roomStreamMaxBytes,
  replicas = 1,
): Partial<StreamConfig> & { name: string } {
  return {
    name: roomStreamName(room.id),
    // The room's wire subject, which reaches this account (the rooms') by
    // the users' account's service import: see server/nats/config.ts.
    subjects: [persistedRoomSubject(room.id)],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    max_age: nanos(ROOM_STREAM_MAX_AGE_MS),
    // Bounded like the age: one chatty room must not fill the node's disk.
    max_bytes: maxBytes,
    discard: DiscardPolicy.Old,
    num_replicas: replicas,
    // Members read history by direct get: the only JetStream read their ACL
    // allows (no consumers, which could outlive a member's removal).
    allow_direct: true,
  };
}

/**
 * Creates the stream of a persisted room through `nc` (serve's internal
 * connection) and returns its name.
 *
 * @example
 * ```ts
 * const name = await createRoomStream(conn.nc, { id: room.id, subject: room.subject });
 * ```
 */
export async function createRoomStream(
  nc: NatsConnection,
  room: StreamRoom,
  maxBytes: number = DEFAULT_LIMITS.roomStreamMaxBytes,
  replicas = 1,
): Promise<string> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const cfg = roomStreamConfig(room, maxBytes, replicas);
  try {
    await jsm.streams.add(cfg);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === INSUFFICIENT_RESOURCES) {
      throw new StreamStorageFullError(err.message, { cause: err });
    }
    if (err instanceof JetStreamApiError && err.code === NO_SUITABLE_PEERS) {
      throw new StreamPlacementError(err.message, { cause: err });
    }
    throw err;
  }
  return cfg.name;
}

// JetStream's "insufficient storage resources available" (JSInsufficientResourcesErr).
const INSUFFICIENT_RESOURCES = 10047;
// JetStream's "no suitable peers for placement" (JSClusterNoPeersErr).
const NO_SUITABLE_PEERS = 10005;

/**
 * Deletes the stream of a room; resolves when it is gone, including when it
 * never existed (a room that was not persisted, or a delete being retried).
 *
 * @example
 * ```ts
 * await deleteRoomStream(conn.nc, room.id);
 * ```
 */
export async function deleteRoomStream(nc: NatsConnection, roomId: string): Promise<void> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  try {
    await jsm.streams.delete(roomStreamName(roomId));
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) return;
    throw err;
  }
}

/**
 * {@linkcode RoomStreams} over a NATS connection with JetStream.
 *
 * @example
 * ```ts
 * const streams = natsRoomStreams(conn.nc, { maxBytes: 64 * 1024 * 1024, replicas: 3 });
 * await streams.create({ id: room.id, subject: room.subject });
 * ```
 */
export function natsRoomStreams(
  nc: NatsConnection,
  opts: { maxBytes?: number; replicas?: number } = {},
): RoomStreams {
  return {
    create: (room) => createRoomStream(nc, room, opts.maxBytes, opts.replicas),
    delete: (roomId) => deleteRoomStream(nc, roomId),
  };
}
