/**
 * The blob service: opaque bytes (attachments a client encrypted under a
 * room key) too large for a NATS message. They belong to a room; only its
 * current members may upload or download them, and a blob of a room the
 * caller is not in is refused as not found, exactly like a missing one. The
 * HTTP routes (server/http/routes/blobs.ts) read requests and map refusals.
 *
 * @module
 */

import {
  type Blob,
  BlobExistsError,
  type BlobMeta,
  NotFoundError,
  type Room,
  type Store,
  StoreOutcomeUnknownError,
} from "../../lib/store/store.ts";
import { KeyedLock } from "../keyed_lock.ts";
import type { Limits } from "../limits.ts";
import { ID32, notFound, quotaExceeded, RoomRefusal } from "../rooms/refusal.ts";
import { memberRoom } from "../rooms/service.ts";
import { verifiedRoom } from "../rooms/state.ts";

/** What the blob service needs. */
export interface BlobServiceDeps {
  store: Store;
  /** How many blobs, and bytes of them, one user may hold; unlimited when unset. */
  quotas?: Pick<Limits, "blobsPerUser" | "blobBytesPerUser">;
  /** Serialises one user's quota check and write; shared with the room service. */
  locks?: KeyedLock;
}

/**
 * An upload whose store write was sent and never acknowledged: it may be
 * stored under `id`, which the client learns only here, so that it can look
 * for the blob before uploading it again.
 */
export class BlobOutcomeUnknownError extends Error {
  override name = "BlobOutcomeUnknownError";
  constructor(readonly id: string, options?: ErrorOptions) {
    super(`the upload of blob ${id} was not acknowledged`, options);
  }
}

function newBlobId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The blob service over `deps`.
 *
 * @example
 * ```ts
 * const blobs = new BlobService({ store });
 * const { id } = await blobs.put(caller, roomId, bytes);
 * ```
 */
export class BlobService {
  readonly #store: Store;
  readonly #quotas: Pick<Limits, "blobsPerUser" | "blobBytesPerUser">;
  readonly #locks: KeyedLock;

  constructor(deps: BlobServiceDeps) {
    this.#store = deps.store;
    this.#quotas = deps.quotas ?? { blobsPerUser: Infinity, blobBytesPerUser: Infinity };
    this.#locks = deps.locks ?? new KeyedLock();
  }

  // Counted from the store under the uploader's lock, as rooms are.
  async #requireQuota(caller: string, size: number): Promise<void> {
    const used = await this.#store.blobUsageOf(caller);
    if (used.count >= this.#quotas.blobsPerUser) {
      throw quotaExceeded("blobs_per_user", this.#quotas.blobsPerUser, used.count);
    }
    if (used.bytes + size > this.#quotas.blobBytesPerUser) {
      throw quotaExceeded("blob_bytes_per_user", this.#quotas.blobBytesPerUser, used.bytes);
    }
  }

  // The blob if the caller is a current member of its room (or, with
  // `uploaderToo`, its uploader); else the same not-found as for a blob that
  // does not exist, so a probe learns nothing.
  async #visible(caller: string, id: string, uploaderToo: boolean): Promise<BlobMeta> {
    if (!ID32.test(id)) throw notFound("blob");
    const meta = await this.#store.getBlobMeta(id);
    const mine = uploaderToo && meta?.owner === caller;
    if (!meta || (!mine && !(await this.#store.getMember(meta.roomId, caller)))) {
      throw notFound("blob");
    }
    return meta;
  }

  /**
   * Room `roomId`, if the caller is a member: asked before an upload's bytes
   * are read, so a stranger's upload is refused without reading it.
   */
  room(caller: string, roomId: string): Promise<Room> {
    return memberRoom(this.#store, roomId, caller);
  }

  /** Stores `data` as a new blob of `room` (from {@linkcode BlobService.room}). */
  async put(caller: string, room: Room, data: Uint8Array): Promise<{ id: string; size: number }> {
    const store = this.#store;
    if (data.byteLength === 0) throw new RoomRefusal("empty_blob", "the blob is empty");
    let id = newBlobId();
    await this.#locks.run(`quota:${caller}`, async () => {
      await this.#requireQuota(caller, data.byteLength);
      for (let attempt = 0;; attempt++) {
        try {
          await store.putBlob({ id, roomId: room.id, owner: caller, data });
          return;
        } catch (err) {
          // Deleted while the bytes arrived: the store refuses a blob for a
          // room that is gone.
          if (err instanceof NotFoundError) throw notFound("room");
          if (err instanceof StoreOutcomeUnknownError) {
            throw new BlobOutcomeUnknownError(id, { cause: err });
          }
          // 128 random bits do not collide; this guards a broken RNG, once.
          if (!(err instanceof BlobExistsError) || attempt > 0) throw err;
          id = newBlobId();
        }
      }
    });
    // The room may have been deleted while the bytes arrived; its blobs went
    // with it, so this one must not outlive it either. A failed read here
    // says nothing about the committed upload, which stands (a blob of a
    // deleted room is invisible anyway: it names the room's old incarnation).
    const gone = await store.getRoom(room.id).then((r) => r === null, () => false);
    if (gone) {
      // Best effort: an undeleted blob of a gone room is invisible and counted
      // against its uploader only until they delete it.
      await store.deleteBlob(id).catch(() => {});
      throw notFound("room");
    }
    return { id, size: data.byteLength };
  }

  /** Blob `id`, if the caller is a member of its room. */
  async get(caller: string, id: string): Promise<Blob> {
    await this.#visible(caller, id, false);
    const blob = await this.#store.getBlob(id);
    if (!blob) throw notFound("blob");
    return blob;
  }

  /**
   * Deletes blob `id`. A blob counts against its uploader's quota until it is
   * deleted, so the uploader may always delete it, also after leaving the
   * room or being removed (else the slot is lost for good). A room admin may
   * too, to clean up after members.
   */
  async delete(caller: string, id: string): Promise<void> {
    const meta = await this.#visible(caller, id, true);
    if (meta.owner !== caller) {
      const { state } = await verifiedRoom(this.#store, meta.roomId);
      if (state.members.get(caller)?.role !== "admin") {
        throw new RoomRefusal(
          "not_allowed",
          "only the blob's uploader or an admin of its room may delete it",
        );
      }
    }
    try {
      await this.#store.deleteBlob(id);
    } catch (err) {
      // Deleted meanwhile (by the room's deletion or another request).
      if (err instanceof NotFoundError) throw notFound("blob");
      throw err;
    }
  }
}
