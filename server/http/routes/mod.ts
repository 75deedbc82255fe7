/**
 * The control plane's API routes (everything but `/healthz`), assembled from
 * one module per concern.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../../../lib/log.ts";
import type { MissingPeers } from "../../cluster/status.ts";
import type { Store } from "../../../lib/store/store.ts";
import { DEFAULT_LIMITS, type Limits } from "../../limits.ts";
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
  /** serve's connection in the rooms' account (JetStream for persisted rooms' streams). */
  streamsNc: NatsConnection;
  /** serve's connection in the users' account (the server's notices). */
  noticesNc: NatsConnection;
  /** Triggers an immediate enforcer pass after a membership change (of that room's users). */
  recheck: (roomId?: string) => void;
  log: Logger;
  /** Overrides the streams (tests); defaults to JetStream on `streamsNc`. */
  streams?: RoomStreams;
  /** Quotas and the persisted rooms' stream size; the defaults when unset. */
  limits?: Limits;
  /** Replicas of persisted rooms' streams (the control plane's: 3 in a cluster). */
  streamReplicas?: number;
  /** The cluster's nodes that are down (a cluster only): see RoomRouteDeps. */
  missingNodes?: () => Promise<MissingPeers>;
}

/**
 * Every `/v1` route.
 *
 * @example
 * ```ts
 * createApp({ log, routes: [healthRoute(...), ...apiRoutes({ store, streamsNc, noticesNc, recheck, log })] });
 * ```
 */
export function apiRoutes(deps: ApiDeps): Route[] {
  const limits = deps.limits ?? DEFAULT_LIMITS;
  // One lock table for every route: room changes lock the room id, quota
  // checks lock `quota:<user>`, so neither namespace can block the other.
  const locks = new KeyedLock();
  return [
    ...userRoutes({ store: deps.store }),
    ...roomRoutes({
      store: deps.store,
      streams: deps.streams ??
        natsRoomStreams(deps.streamsNc, {
          maxBytes: limits.roomStreamMaxBytes,
          replicas: deps.streamReplicas,
        }),
      recheck: deps.recheck,
      notify: roomChangeNotifier(deps.noticesNc),
      log: deps.log,
      locks,
      quotas: limits,
      missingNodes: deps.missingNodes,
    }),
    ...keyRoutes({ store: deps.store }),
    ...blobRoutes({ store: deps.store, quotas: limits, locks }),
  ];
}
