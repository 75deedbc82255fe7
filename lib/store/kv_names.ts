/**
 * The names of the KV store's buckets and streams, apart from the code that
 * opens them, so that naming them (`/healthz`, `mod.ts`) loads no JetStream
 * library.
 *
 * @module
 */

/** The buckets, named as the operators' runbook names them (`KV_<name>` streams). */
export const KV_BUCKETS = {
  users: "UNIBUS_users",
  rooms: "UNIBUS_rooms",
  members: "UNIBUS_members",
  roomKeys: "UNIBUS_room_keys",
  roomsByMember: "UNIBUS_rooms_by_member",
  nonces: "UNIBUS_nonces",
  changes: "UNIBUS_room_changes",
  blobMeta: "UNIBUS_blob_meta",
} as const;

/** The object store of blob bytes (stream `OBJ_UNIBUS_blobs`). */
export const BLOB_OBJECT_STORE = "UNIBUS_blobs";

/**
 * The JetStream streams that hold the control plane: one per KV bucket and
 * the blob object store's, as `/healthz` reports their replication.
 *
 * @example
 * ```ts
 * controlPlaneStreams(); // ["KV_UNIBUS_users", …, "OBJ_UNIBUS_blobs"]
 * ```
 */
export function controlPlaneStreams(): string[] {
  return [...Object.values(KV_BUCKETS).map((b) => `KV_${b}`), `OBJ_${BLOB_OBJECT_STORE}`];
}
