/**
 * The control plane's API routes (everything but `/healthz`), assembled from
 * one module per concern.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../../../lib/log.ts";
import type { Store } from "../../../lib/store/store.ts";
import { natsRoomStreams, type RoomStreams } from "../../rooms/streams.ts";
import type { Route } from "../app.ts";
import { blobRoutes } from "./blobs.ts";
import { KeyedLock } from "./common.ts";
import { keyRoutes } from "./keys.ts";
import { roomRoutes } from "./rooms.ts";
import { roomChangeNotifier } from "../../rooms/notices.ts";
import { userRoutes } from "./users.ts";

/** What the API needs from `serve`. */
export interface ApiDeps {
  store: Store;
  /** serve's internal connection (JetStream for persisted rooms' streams). */
  nc: NatsConnection;
  /** Triggers an immediate enforcer pass after a membership change. */
  recheck: () => void;
  log: Logger;
  /** Overrides the streams (tests); defaults to JetStream on `nc`. */
  streams?: RoomStreams;
}

/**
 * Every `/v1` route.
 *
 * @example
 * ```ts
 * createApp({ log, routes: [healthRoute(...), ...apiRoutes({ store, nc, recheck, log })] });
 * ```
 */
export function apiRoutes(deps: ApiDeps): Route[] {
  return [
    ...userRoutes({ store: deps.store }),
    ...roomRoutes({
      store: deps.store,
      streams: deps.streams ?? natsRoomStreams(deps.nc),
      recheck: deps.recheck,
      notify: roomChangeNotifier(deps.nc),
      log: deps.log,
      locks: new KeyedLock(),
    }),
    ...keyRoutes({ store: deps.store }),
    ...blobRoutes({ store: deps.store }),
  ];
}
