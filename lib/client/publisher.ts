/**
 * Publishing into rooms: messages published in one tick go out as one
 * sealed, signed packet; a persisted room's packets are resent until its
 * stream stores them (durable_publish.ts).
 *
 * @module
 */

import { type Deferred, deferred } from "../platform/mod.ts";
import type { NatsConnection } from "@nats-io/transport-node";
import { roomStreamName } from "../auth/acl.ts";
import { utf8 } from "../e2e/bytes.ts";
import type { DurablePublisher } from "./durable_publish.ts";
import { RoomKeyUnavailableError } from "./errors.ts";
import type { RoomSession } from "./room_session.ts";
import type { RoomRef } from "./types.ts";

/** Messages in one packet at most. */
const MAX_BATCH_FRAMES = 256;
// 512 KiB: large frames (16 KiB) go 32 to a packet, so a signature, its
// verification and one NATS message are paid per 32 of them; nats-server's
// max_payload (1 MiB) is far enough above it (docs/benchmarks.md).
const MAX_BATCH_BYTES = 512 * 1024;

interface Batch {
  frames: Uint8Array[];
  bytes: number;
  done: Deferred<void>;
}

/** What publishing needs of its client. */
export interface PublisherCore {
  readonly nc: NatsConnection;
  readonly durable: DurablePublisher;
  ensureOpen(): void;
  /** A room already loaded, without waiting. */
  known(ref: RoomRef): RoomSession | undefined;
  room(ref: RoomRef): Promise<RoomSession>;
  reload(id: string): Promise<RoomSession>;
}

/**
 * A client's publishing side (its `publish` delegates here).
 *
 * @example
 * ```ts
 * const publisher = new RoomPublisher(core);
 * await publisher.publish(room, "hello");
 * ```
 */
export class RoomPublisher {
  readonly #core: PublisherCore;
  #batches = new Map<string, Batch>();

  constructor(core: PublisherCore) {
    this.#core = core;
  }

  /** Publishes one message (see the client's `publish`). */
  publish(ref: RoomRef, data: Uint8Array | string): Promise<void> {
    const bytes = typeof data === "string" ? utf8(data) : data;
    const key = typeof ref === "string" ? ref : ref.id;
    let batch = this.#batches.get(key);
    if (
      !batch || batch.frames.length >= MAX_BATCH_FRAMES ||
      batch.bytes + bytes.length > MAX_BATCH_BYTES
    ) {
      batch = { frames: [], bytes: 0, done: deferred<void>() };
      this.#batches.set(key, batch);
      const sealed = batch;
      queueMicrotask(() => {
        if (this.#batches.get(key) === sealed) this.#batches.delete(key);
        try {
          this.#send(ref, sealed.frames).then(sealed.done.resolve, sealed.done.reject);
        } catch (err) {
          sealed.done.reject(err);
        }
      });
    }
    batch.frames.push(bytes);
    batch.bytes += bytes.length;
    return batch.done.promise;
  }

  #send(ref: RoomRef, frames: Uint8Array[]): Promise<void> {
    this.#core.ensureOpen();
    // Known room: seal and hand to NATS in this very microtask (latency);
    // otherwise load it first.
    const known = this.#core.known(ref);
    if (known) {
      try {
        this.#sendNow(known, frames);
        return Promise.resolve();
      } catch (err) {
        if (!(err instanceof RoomKeyUnavailableError)) throw err;
      }
    }
    return this.#sendWhenKeyed(ref, frames);
  }

  // The room's current epoch may be younger than its key: the admin uploads
  // the key right after the change, so wait a little for it.
  async #sendWhenKeyed(ref: RoomRef, frames: Uint8Array[]): Promise<void> {
    const session = await this.#core.room(ref);
    for (let attempt = 0;; attempt++) {
      try {
        return this.#sendNow(session, frames);
      } catch (err) {
        if (!(err instanceof RoomKeyUnavailableError) || attempt >= 6) throw err;
      }
      await new Promise((r) => setTimeout(r, 25 * 2 ** attempt));
      await this.#core.reload(session.roomId);
    }
  }

  #sendNow(session: RoomSession, frames: Uint8Array[]): void {
    const policy = session.state.policy;
    if (!policy.encrypt && !policy.sign) {
      for (const f of frames) this.#core.nc.publish(session.wireSubject, f);
      return;
    }
    const packet = session.seal(frames);
    if (policy.persist) {
      this.#core.durable.send(session.wireSubject, roomStreamName(session.roomId), packet);
    } else this.#core.nc.publish(session.wireSubject, packet);
  }

  /** Resolves once everything published so far was handed to NATS and flushed. */
  async sent(): Promise<void> {
    await Promise.all([...this.#batches.values()].map((b) => b.done.promise));
    await this.#core.nc.flush();
  }
}
