/**
 * Blob routes: `POST /v1/rooms/:id/blobs`, `GET /v1/blobs/:id`,
 * `DELETE /v1/blobs/:id`. They read the request and hand it to the blob
 * service (server/blobs/service.ts), which holds every rule; its refusals
 * become statuses in `storeErrors` (common.ts).
 *
 * @module
 */

import type { Store } from "../../../lib/store/store.ts";
import { BlobOutcomeUnknownError, BlobService } from "../../blobs/service.ts";
import { type Limits, MAX_BLOB_BYTES } from "../../limits.ts";
import { HttpError, json, readBody, type Route } from "../app.ts";
import { callerOf, type KeyedLock, outcomeUnknown, storeErrors } from "./common.ts";

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

/**
 * The blob routes over a {@linkcode BlobService} made from `deps`.
 *
 * @example
 * ```ts
 * createApp({ log, routes: [...blobRoutes({ store })] });
 * ```
 */
export function blobRoutes(deps: BlobRouteDeps): Route[] {
  const blobs = new BlobService(deps);
  return [
    {
      method: "POST",
      path: "/v1/rooms/:id/blobs",
      maxBodyBytes: deps.maxBlobBytes ?? MAX_BLOB_BYTES,
      handler: storeErrors(async (req, ctx) => {
        const caller = callerOf(ctx);
        const room = await blobs.room(caller, ctx.params.id);
        const type = req.headers.get("content-type")?.split(";")[0].trim().toLowerCase();
        if (type !== "application/octet-stream") {
          throw new HttpError(
            415,
            "unsupported_media_type",
            "upload blobs as application/octet-stream",
          );
        }
        try {
          return json(201, await blobs.put(caller, room, await readBody(req, ctx)));
        } catch (err) {
          // The id is the server's: the client learns it only here, so that
          // it can look for the blob before uploading it again.
          if (err instanceof BlobOutcomeUnknownError) throw outcomeUnknown({ id: err.id });
          throw err;
        }
      }),
    },
    {
      method: "GET",
      path: "/v1/blobs/:id",
      handler: storeErrors(async (_req, ctx) => {
        const blob = await blobs.get(callerOf(ctx), ctx.params.id);
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
        await blobs.delete(callerOf(ctx), ctx.params.id);
        return new Response(null, { status: 204 });
      }),
    },
  ];
}
