/**
 * The shapes the control plane's HTTP API sends and the client reads, defined
 * once for both sides (docs/api.md describes them): the server builds them,
 * the client library takes them as unverified input and checks what they
 * claim (a room's `changes` against its signatures).
 *
 * @module
 */

/** A signed membership change: its canonical text and its signature. */
export interface SignedChange {
  text: string;
  /** Standard base64 of the 64-byte Ed25519 signature by `by`. */
  sig: string;
}

/** What a room requires of its traffic. */
export interface RoomPolicy {
  encrypt: boolean;
  sign: boolean;
  persist: boolean;
}

/** A room as `GET /v1/rooms/:id` answers it (a client verifies `changes`). */
export interface RoomView {
  id: string;
  subject: string;
  policy: RoomPolicy;
  epoch: number;
  createdBy: string;
  createdAt: number;
  members: Array<{ signPub: string; role: "admin" | "member" }>;
  /** The full signed membership log, in seq order. */
  changes: SignedChange[];
  /** The JetStream stream of a persisted room, else null. */
  stream: string | null;
}

/** A room as `GET /v1/rooms?view=summary` lists it. */
export type RoomSummary = Pick<RoomView, "id" | "subject" | "policy" | "epoch">;

/** A user's public record, as `GET /v1/users/:signPub` answers it. */
export interface UserView {
  signPub: string;
  handle: string;
  role: "admin" | "member";
  status: "active" | "revoked";
  kexPub: string | null;
  kexSig: string | null;
}

/** A sealed room key addressed to the caller. */
export interface SealedKeyView {
  epoch: number;
  sealed: string;
  sealedBy: string;
}
