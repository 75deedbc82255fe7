/**
 * The client library's public types, beside the class that uses them.
 *
 * @module
 */

import type { Identity } from "../identity/identity.ts";
import type { RoomPolicy } from "../e2e/membership.ts";
import type { RoomStats } from "./room_session.ts";

/** Options for {@linkcode connect}. */
export interface ConnectOptions {
  /** NATS seed URLs (nats:// or tls://); the client fails over between them. */
  natsServers: string[];
  /** Control-plane seed URLs (http:// or https://). */
  ctrlUrls: string[];
  identity: Identity;
  /** Pin TLS on both planes to this CA (PEM file). */
  tls?: { caFile: string };
  /** Connection name shown in nats-server's monitoring. */
  name?: string;
  /**
   * A file (created 0600 if absent) where the client keeps its replay window
   * across restarts: packets it handled before a restart stay replays after
   * it. Without one, a restarted client refuses every live packet signed
   * before it started (protocol.md §2.9), which covers all but the last
   * couple of seconds before the restart. One file per identity and process.
   */
  receiveStateFile?: string;
  /**
   * Hears of what failed in the background, where no call of the program's
   * could throw it: a session refresh after the server's notice, a room
   * reload (including a membership log that no longer verifies), a write of
   * the receive state, reconnects refused for good. Without a handler each
   * distinct failure (kind and room) is one warning line on stderr.
   */
  onError?: (event: ClientErrorEvent) => void;
}

/** What failed in the background (see {@linkcode ConnectOptions.onError}). */
export type ClientFailure =
  | "refresh-session"
  | "reload"
  | "receive-state-write"
  | "reconnect-refused";

/** One background failure: which room (if one), what, and the error. */
export interface ClientErrorEvent {
  room: string | null;
  what: ClientFailure;
  error: Error;
}

/** A room this client can use. */
export interface RoomInfo {
  id: string;
  subject: string;
  policy: RoomPolicy;
  epoch: number;
}

/** A room given by id (32 hex characters) or by subject. */
export type RoomRef = string | { id: string };

/** What {@linkcode UnibusClient.history} and `readHistory` read. */
export interface HistoryOptions {
  /** Stop after this many messages (a whole number >= 0). Default: all. */
  limit?: number;
  /** Start at this stream sequence; the stream's first one when absent or older. */
  startSeq?: number;
  /**
   * {@linkcode UnibusClient.history} only: keep the last this many messages
   * of those read (a whole number >= 0), so that memory stays bounded by it
   * however long the history is. Default: all.
   */
  last?: number;
}

/** A live room subscription. */
export interface RoomSubscription {
  /** What was delivered and dropped on this subscription. */
  readonly stats: RoomStats;
  unsubscribe(): void;
  /** Resolves once every message received so far was handled. */
  drained(): Promise<void>;
}

/** A reference to an encrypted blob, to be sent inside a room message. */
export interface BlobRef {
  id: string;
  /** Base64 of the blob's own key; only ever travels end-to-end encrypted. */
  key: string;
  size: number;
}
