/**
 * The unibus client library: connect with an identity, create and join
 * end-to-end encrypted rooms, publish and subscribe.
 *
 * @example
 * ```ts
 * import { connect, loadIdentity } from "@unibus/unibus/client";
 *
 * const client = await connect({
 *   natsServers: ["nats://127.0.0.1:4250"],
 *   ctrlUrls: ["http://127.0.0.1:8470"],
 *   identity: await loadIdentity("alice.id"),
 * });
 * const room = await client.createRoom("agent.scout.in");
 * await client.subscribe(room, (meta, data) => console.log(meta.sender, new TextDecoder().decode(data)));
 * await client.publish(room, "hello");
 * ```
 *
 * Under Deno the library patches two things process-wide (a connection-reset
 * guard and a TLS empty-write shim, see patches.ts); call
 * `installClientPatches()` at start to install them explicitly, or let
 * `connect()` do it.
 *
 * @module
 */

export {
  type BlobRef,
  type ClientErrorEvent,
  type ClientFailure,
  connect,
  type ConnectOptions,
  type FrameMeta,
  type HistoryOptions,
  type RoomInfo,
  type RoomRef,
  type RoomStats,
  type RoomSubscription,
  UnibusClient,
} from "./client.ts";
export * from "./errors.ts";
export { installClientPatches } from "./patches.ts";
export {
  generateIdentity,
  type Identity,
  loadIdentity,
  loadOrCreateIdentity,
  saveIdentity,
} from "../identity/identity.ts";
export type { RoomPolicy } from "../e2e/membership.ts";
