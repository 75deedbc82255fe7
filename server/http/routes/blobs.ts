/**
 * Blobs: opaque bytes (attachments a client encrypted under a room key) that
 * are too large for a NATS message. They belong to a room; only its current
 * members may upload or download them, and a blob of a room the caller is
 * not in answers 404 exactly like a missing one.
 *
 * @module
 */

import {
  BlobExistsError,
  NotFoundError,
  type Store,
  StoreOutcomeUnknownError,
} from "../../../lib/store/store.ts";
import { type Limits, MAX_BLOB_BYTES } from "../../limits.ts";
import { HttpError, json, readBody, type RequestContext, type Route } from "../app.ts";
import {
  callerOf,
  ID32,
  KeyedLock,
  notFound,
  outcomeUnknown,
  quotaExceeded,
  storeErrors,
} from "./common.ts";
import { memberRoom } from "./rooms.ts";
import { verifiedRoom } from "../../rooms/state.ts";

/** What the blob routes need. */
export interface BlobRouteDeps {
  store: Store;
  /** Largest blob accepted, in bytes; 8 MiB when unset. */
  maxBlobBytes?: number;
  /** How many blobs, and bytes of them, one user may hold; unlimited when unset. */
  quotas?: Pick<Limits, "blobsPerUser" | "blobBytesPerUser">;
  /** Serialises one user's quota check and write; shared with the other routes. */
  locks?: KeyedLock;
}

export { MAX_BLOB_BYTES };

function newBlobId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * `POST /v1/rooms/:id/blobs`, `GET /v1/blobs/:id` and `DELETE /v1/blobs/:id`.
 *
 * @example
 * ```ts
 * createApp({ log, routes: [...blobRoutes({ store })] });
 * ```
 */
export function blobRoutes(deps: BlobRouteDeps): Route[] {
  const { store } = deps;
  const quotas = deps.quotas ?? { blobsPerUser: Infinity, blobBytesPerUser: Infinity };
  const locks = deps.locks ?? new KeyedLock();

  // Counted from the store under the uploader's lock, as rooms are (rooms.ts).
  const requireBlobQuota = async (caller: string, size: number) => {
    const used = await store.blobUsageOf(caller);
    if (used.count >= quotas.blobsPerUser) {
      throw quotaExceeded("blobs_per_user", quotas.blobsPerUser, used.count);
    }
    if (used.bytes + size > quotas.blobBytesPerUser) {
      throw quotaExceeded("blob_bytes_per_user", quotas.blobBytesPerUser, used.bytes);
    }
  };

  // The blob `:id` if the caller is a current member of its room (or, with
  // `uploaderToo`, its uploader); else the same 404 as for a blob that does
  // not exist, so a probe learns nothing.
  const visibleBlob = async (ctx: RequestContext, uploaderToo: boolean) => {
    const caller = callerOf(ctx);
    const id = ctx.params.id;
    if (!ID32.test(id)) throw notFound("blob");
    const meta = await store.getBlobMeta(id);
    const mine = uploaderToo && meta?.owner === caller;
    if (!meta || (!mine && !(await store.getMember(meta.roomId, caller)))) throw notFound("blob");
    return { id, caller, meta };
  };

  return [
    {
      method: "POST",
      path: "/v1/rooms/:id/blobs",
      maxBodyBytes: deps.maxBlobBytes ?? MAX_BLOB_BYTES,
      handler: storeErrors(async (req, ctx) => {
        const caller = callerOf(ctx);
        const room = await memberRoom(store, ctx.params.id, caller);
        const type = req.headers.get("content-type")?.split(";")[0].trim().toLowerCase();
        if (type !== "application/octet-stream") {
          throw new HttpError(
            415,
            "unsupported_media_type",
            "upload blobs as application/octet-stream",
          );
        }
        const data = await readBody(req, ctx);
        if (data.byteLength === 0) throw new HttpError(400, "empty_blob", "the blob is empty");
        let id = newBlobId();
        await locks.run(`quota:${caller}`, async () => {
          await requireBlobQuota(caller, data.byteLength);
          for (let attempt = 0;; attempt++) {
            try {
              await store.putBlob({ id, roomId: room.id, owner: caller, data });
              return;
            } catch (err) {
              // Deleted while the bytes arrived: the store refuses a blob
              // for a room that is gone.
              if (err instanceof NotFoundError) throw notFound("room");
              // The id is the server's: the client learns it only here, so
              // that it can look for the blob before uploading it again.
              if (err instanceof StoreOutcomeUnknownError) throw outcomeUnknown({ id });
              // 128 random bits do not collide; this guards a broken RNG, once.
              if (!(err instanceof BlobExistsError) || attempt > 0) throw err;
              id = newBlobId();
            }
          }
        });
        // The room may have been deleted while the bytes arrived; its blobs
        // went with it, so this one must not outlive it either. A failed read
        // here says nothing about the committed upload, which stands (a blob
        // of a deleted room is invisible anyway: it names the room's old
        // incarnation).
        const gone = await store.getRoom(room.id).then((r) => r === null, () => false);
        if (gone) {
          await store.deleteBlob(id).catch(() => {});
          throw notFound("room");
        }
        return json(201, { id, size: data.byteLength });
      }),
    },
    {
      method: "GET",
      path: "/v1/blobs/:id",
      handler: storeErrors(async (_req, ctx) => {
        const { id } = await visibleBlob(ctx, false);
        const blob = await store.getBlob(id);
        if (!blob) throw notFound("blob");
        return new Response(blob.data as Uint8Array<ArrayBuffer>, {
          status: 200,
          headers: {
            "content-type": "application/octet-stream",
            "content-length": String(blob.data.byteLength),
            "cache-control": "no-store",
          },
        });
      }),
    },
    {
      method: "DELETE",
      path: "/v1/blobs/:id",
      handler: storeErrors(async (_req, ctx) => {
        // A blob counts against its uploader's quota until it is deleted, so
        // the uploader may always delete it, also after leaving the room or
        // being removed (else the slot is lost for good). A room admin may
        // too, to clean up after members.
        const { id, caller, meta } = await visibleBlob(ctx, true);
        if (meta.owner !== caller) {
          const { state } = await verifiedRoom(store, meta.roomId);
          if (state.members.get(caller)?.role !== "admin") {
            throw new HttpError(
              403,
              "not_allowed",
              "only the blob's uploader or an admin of its room may delete it",
            );
          }
        }
        try {
          await store.deleteBlob(id);
        } catch (err) {
          // Deleted meanwhile (by the room's deletion or another request).
          if (err instanceof NotFoundError) throw notFound("blob");
          throw err;
        }
        return new Response(null, { status: 204 });
      }),
    },
  ];
}
