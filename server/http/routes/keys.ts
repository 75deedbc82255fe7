/**
 * Sealed room keys: an admin uploads a room key of one epoch, sealed by the
 * client to each recipient's X25519 key; each member fetches the keys
 * sealed to them. The server only stores opaque base64 and checks who may
 * hand a key to whom, against the verified membership log:
 *
 * - the uploader is an admin of the current state (who may also share an
 *   older epoch with a newer member);
 * - every recipient is a member of that epoch or of the current state;
 * - keys are immutable: a second key for the same (epoch, recipient) is 409.
 *
 * @module
 */

import { KeyExistsError, type Store } from "../../../lib/store/store.ts";
import { everMember, verifiedRoom } from "../../rooms/state.ts";
import { HttpError, json, readJson, type Route } from "../app.ts";
import {
  asObject,
  badRequest,
  callerOf,
  HEX64,
  ID32,
  notFound,
  storeErrors,
  stringField,
} from "./common.ts";
import { memberRoom } from "./rooms.ts";

/** What the key routes need. */
export interface KeyRouteDeps {
  store: Store;
}

const EPOCH = /^(?:0|[1-9][0-9]{0,14})$/;

/**
 * `PUT /v1/rooms/:id/keys/:epoch` and `GET /v1/rooms/:id/keys`.
 *
 * @example
 * ```ts
 * createApp({ log, routes: [...keyRoutes({ store })] });
 * ```
 */
export function keyRoutes(deps: KeyRouteDeps): Route[] {
  const { store } = deps;
  return [
    {
      method: "PUT",
      path: "/v1/rooms/:id/keys/:epoch",
      handler: storeErrors(async (req, ctx) => {
        const caller = callerOf(ctx);
        const id = ctx.params.id;
        const body = asObject(await readJson(req, ctx), "the request body");
        await memberRoom(store, id, caller);
        if (!EPOCH.test(ctx.params.epoch)) {
          throw badRequest("the epoch must be a non-negative integer", "invalid_epoch");
        }
        const epoch = Number(ctx.params.epoch);
        if (!Array.isArray(body.keys) || body.keys.length === 0) {
          throw badRequest("keys must be a non-empty array");
        }
        const keys = body.keys.map((k, i) => {
          const o = asObject(k, `keys[${i}]`);
          return {
            recipient: stringField(o, "recipient", HEX64, "64 lowercase hex characters"),
            sealed: stringField(o, "sealed"),
          };
        });
        const { state } = await verifiedRoom(store, id);
        if (epoch > state.epoch) {
          throw badRequest(`the room is at epoch ${state.epoch}`, "invalid_epoch");
        }
        const ofEpoch = state.epochs.get(epoch)!;
        // A current admin only: an admin of an old epoch who is now a plain
        // member could otherwise pre-empt (keys are immutable, first one wins)
        // the key an admin shares with a newer member.
        const isAdmin = state.members.get(caller)?.role === "admin";
        if (!isAdmin) {
          throw new HttpError(403, "not_admin", "only an admin of the room may share its keys");
        }
        for (const k of keys) {
          if (!ofEpoch.has(k.recipient) && !state.members.has(k.recipient)) {
            throw badRequest(
              `${k.recipient} is not a member of epoch ${epoch} nor of the room`,
              "not_a_member",
            );
          }
        }
        try {
          const stored = await store.putSealedKeys(
            id,
            epoch,
            keys.map((k) => ({ ...k, sealedBy: caller })),
          );
          return json(201, { stored: stored.length });
        } catch (err) {
          if (err instanceof KeyExistsError) {
            throw new HttpError(409, "key_exists", `${err.message}; room keys are immutable`);
          }
          throw err;
        }
      }),
    },
    {
      method: "GET",
      path: "/v1/rooms/:id/keys",
      handler: storeErrors(async (_req, ctx) => {
        const caller = callerOf(ctx);
        const id = ctx.params.id;
        if (!ID32.test(id) || !(await store.getRoom(id))) throw notFound("room");
        // Former members keep the keys of the epochs they belonged to: they
        // may still need to read history they were part of.
        const { state } = await verifiedRoom(store, id);
        if (!everMember(state, caller)) throw notFound("room");
        const keys = await store.listSealedKeysFor(id, caller);
        return json(200, {
          keys: keys.map((k) => ({ epoch: k.epoch, sealed: k.sealed, sealedBy: k.sealedBy })),
        });
      }),
    },
  ];
}
