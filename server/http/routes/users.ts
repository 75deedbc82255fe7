/**
 * User routes: looking up another user's public keys (clients need a
 * member's X25519 key to add them and to seal room keys to them) and
 * registering one's own key-exchange key.
 *
 * An identity's key-exchange key never changes once registered: everything
 * already sealed to it, and every membership change naming it, would
 * otherwise silently point at a different key.
 *
 * @module
 */

import type { UserView } from "../../../lib/api/types.ts";
import { handleViolation } from "../../../lib/grammar.ts";
import { verifyKexBinding } from "../../../lib/identity/identity.ts";
import { ConflictError, type Store, type User } from "../../../lib/store/store.ts";
import { HttpError, json, readJson, type Route } from "../app.ts";
import {
  asObject,
  badRequest,
  callerOf,
  HEX128,
  HEX64,
  KeyedLock,
  notFound,
  storeErrors,
  stringField,
} from "./common.ts";

/** What the user routes need. */
export interface UserRouteDeps {
  store: Store;
}

export type { UserView } from "../../../lib/api/types.ts";

/**
 * The public view of a user: no timestamps, nothing secret (the store holds
 * nothing secret about users anyway).
 *
 * @example
 * ```ts
 * const view = userView(await store.getUser(pub));
 * ```
 */
export function userView(u: User): UserView {
  return {
    signPub: u.signPub,
    handle: u.handle,
    role: u.role,
    status: u.status,
    kexPub: u.kexPub,
    kexSig: u.kexSig,
  };
}

/**
 * `GET /v1/users?handle=H`, `GET /v1/users/:signPub` and `PUT /v1/me/kex`.
 *
 * @example
 * ```ts
 * createApp({ log, routes: [...userRoutes({ store })] });
 * ```
 */
export function userRoutes(deps: UserRouteDeps): Route[] {
  const { store } = deps;
  // Two concurrent registrations of different keys must not both see "none
  // yet" and let the last write win.
  const kexLocks = new KeyedLock();
  return [
    {
      // Who a handle names, so that a person or an agent can say "bob"
      // instead of 64 hex characters. Only active users: a revoked one can
      // never be added to a room. Exact match; several users may share a
      // handle, and the caller must then choose by key (the list says so).
      // It shows no more than a lookup by key does.
      method: "GET",
      path: "/v1/users",
      handler: storeErrors(async (_req, ctx) => {
        callerOf(ctx);
        const handle = ctx.url.searchParams.get("handle");
        if (handle === null) throw badRequest("give ?handle=NAME", "invalid_request");
        const bad = handleViolation(handle);
        if (bad) throw badRequest(`handle: ${bad.message}`, "invalid_handle");
        // A scan of the allowlist, not an index: a bus holds hundreds of
        // users, and this is asked only when a command names a member by handle.
        const users = (await store.listUsers())
          .filter((u) => u.handle === handle && u.status === "active")
          .map(userView);
        return json(200, { users });
      }),
    },
    {
      method: "GET",
      path: "/v1/users/:signPub",
      handler: storeErrors(async (_req, ctx) => {
        callerOf(ctx);
        const signPub = ctx.params.signPub;
        if (!HEX64.test(signPub)) {
          throw badRequest("signPub must be 64 lowercase hex characters", "invalid_key");
        }
        const user = await store.getUser(signPub);
        if (!user) throw notFound("user");
        return json(200, userView(user));
      }),
    },
    {
      method: "PUT",
      path: "/v1/me/kex",
      handler: storeErrors(async (req, ctx) => {
        const caller = callerOf(ctx);
        const body = asObject(await readJson(req, ctx), "the request body");
        const kexPub = stringField(body, "kexPub", HEX64, "64 lowercase hex characters");
        const kexSig = stringField(body, "kexSig", HEX128, "128 lowercase hex characters");
        if (!verifyKexBinding(caller, kexPub, kexSig)) {
          throw badRequest(
            "kexSig is not the caller's signature binding kexPub, or kexPub is unusable",
            "bad_kex_binding",
          );
        }
        return await kexLocks.run(caller, async () => {
          const user = await store.getUser(caller);
          if (!user) throw notFound("user");
          if (user.kexPub === kexPub) return json(200, { changed: false });
          if (user.kexPub !== null) {
            throw new HttpError(
              409,
              "kex_conflict",
              "a different key-exchange key is already registered; it never changes",
            );
          }
          try {
            await store.setUserKex(caller, kexPub, kexSig);
          } catch (err) {
            // Set only if unset: another node registered a key first.
            if (!(err instanceof ConflictError)) throw err;
            throw new HttpError(
              409,
              "kex_conflict",
              "a different key-exchange key is already registered; it never changes",
            );
          }
          return json(200, { changed: true });
        });
      }),
    },
  ];
}
