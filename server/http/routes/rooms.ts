/**
 * Room routes: `POST /v1/rooms` (create from a signed genesis change),
 * `GET /v1/rooms`, `GET /v1/rooms/:id`, `GET /v1/rooms/by-subject/:subject`,
 * `POST /v1/rooms/:id/changes` (append a signed membership change),
 * `DELETE /v1/rooms/:id`. They read the request and hand it to the room
 * service (server/rooms/service.ts), which holds every rule; its refusals
 * become statuses in `storeErrors` (common.ts).
 *
 * @module
 */

import type { SignedChange } from "../../../lib/e2e/membership.ts";
import { RoomService, type RoomServiceDeps } from "../../rooms/service.ts";
import { json, readJson, type Route } from "../app.ts";
import { asObject, badRequest, callerOf, storeErrors, stringField } from "./common.ts";

export { memberRoom } from "../../rooms/service.ts";

/** What the room routes need: the room service's dependencies. */
export type RoomRouteDeps = RoomServiceDeps;

/**
 * Reads `{change: {text, sig}}` from a request body, else 400.
 *
 * @example
 * ```ts
 * const change = changeFromBody({ change: { text: "…", sig: "…" } });
 * ```
 */
export function changeFromBody(body: unknown): SignedChange {
  const change = asObject(asObject(body, "the request body").change, "change");
  return { text: stringField(change, "text"), sig: stringField(change, "sig") };
}

/**
 * The room routes over a {@linkcode RoomService} made from `deps`.
 *
 * @example
 * ```ts
 * const routes = roomRoutes({ store, streams: natsRoomStreams(nc), recheck, log });
 * ```
 */
export function roomRoutes(deps: RoomRouteDeps): Route[] {
  const rooms = new RoomService(deps);
  return [
    {
      method: "POST",
      path: "/v1/rooms",
      handler: storeErrors(async (req, ctx) => {
        const caller = callerOf(ctx);
        const change = changeFromBody(await readJson(req, ctx));
        return json(201, await rooms.create(caller, change));
      }),
    },
    {
      method: "GET",
      path: "/v1/rooms",
      handler: storeErrors(async (_req, ctx) => {
        const caller = callerOf(ctx);
        const view = ctx.url.searchParams.get("view");
        if (view !== null && view !== "summary") {
          throw badRequest("view must be `summary` or absent", "invalid_view");
        }
        return json(200, { rooms: await rooms.list(caller, view === "summary") });
      }),
    },
    {
      method: "GET",
      path: "/v1/rooms/by-subject/:subject",
      handler: storeErrors(async (_req, ctx) =>
        json(200, await rooms.bySubject(callerOf(ctx), ctx.params.subject))
      ),
    },
    {
      method: "GET",
      path: "/v1/rooms/:id",
      handler: storeErrors(async (_req, ctx) =>
        json(200, await rooms.get(callerOf(ctx), ctx.params.id))
      ),
    },
    {
      method: "POST",
      path: "/v1/rooms/:id/changes",
      handler: storeErrors(async (req, ctx) => {
        const caller = callerOf(ctx);
        const change = changeFromBody(await readJson(req, ctx));
        return json(200, await rooms.change(caller, ctx.params.id, change));
      }),
    },
    {
      method: "DELETE",
      path: "/v1/rooms/:id",
      handler: storeErrors(async (_req, ctx) => {
        await rooms.delete(callerOf(ctx), ctx.params.id);
        return new Response(null, { status: 204 });
      }),
    },
  ];
}
