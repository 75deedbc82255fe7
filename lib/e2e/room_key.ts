/**
 * Sealed room keys: an epoch's 32-byte room key, sealed to one member's
 * X25519 key and signed by the admin who generated it.
 *
 *   sealed   = crypto_box_seal(lp(room id) || u32 epoch || room key, member kex pub)
 *   envelope = sealed || Ed25519(admin, "unibus/room-key/v1" || lp(room id)
 *                                       || u32 epoch || member sign pub (32) || sealed)
 *
 * The room and epoch sit inside the box too, so a server cannot move a
 * sealed key to another room or epoch; the signature lets the member check
 * the key came from an admin of that epoch, not from the server.
 *
 * @module
 */

import { randomBytes } from "node:crypto";
import type { Ed25519KeyPair } from "../crypto/ed25519.ts";
import { verifySignature } from "../crypto/ed25519.ts";
import { ByteReader, concatBytes, lengthPrefixed, u32, utf8 } from "./bytes.ts";
import { openBox, sealBox } from "./sealed_box.ts";

const CONTEXT = utf8("unibus/room-key/v1");

/** A fresh random room key. */
export function generateRoomKey(): Uint8Array {
  return new Uint8Array(randomBytes(32));
}

function signedPart(roomId: string, epoch: number, member: Uint8Array, sealed: Uint8Array) {
  return concatBytes(CONTEXT, lengthPrefixed(roomId), u32(epoch), member, sealed);
}

/**
 * Seals and signs `roomKey` for one member.
 *
 * `ephemeralSecret` is passed to {@linkcode sealBox} and exists only for
 * reproducible test vectors; real callers leave it out so every envelope
 * gets a fresh ephemeral key.
 *
 * @example
 * ```ts
 * const envelope = sealRoomKey({ roomId, epoch, roomKey, memberSignPub, memberKexPub, admin: id.signer });
 * ```
 */
export function sealRoomKey(a: {
  roomId: string;
  epoch: number;
  roomKey: Uint8Array;
  memberSignPub: Uint8Array;
  memberKexPub: Uint8Array;
  admin: Ed25519KeyPair;
  ephemeralSecret?: Uint8Array;
}): Uint8Array {
  const sealed = sealBox(
    concatBytes(lengthPrefixed(a.roomId), u32(a.epoch), a.roomKey),
    a.memberKexPub,
    a.ephemeralSecret,
  );
  return concatBytes(sealed, a.admin.sign(signedPart(a.roomId, a.epoch, a.memberSignPub, sealed)));
}

/** Thrown when an envelope does not open, or was not signed by the claimed admin. */
export class RoomKeyError extends Error {
  override name = "RoomKeyError";
}

/**
 * Checks the admin's signature, opens the envelope and checks that it is for
 * this room and epoch; returns the room key.
 *
 * @example
 * ```ts
 * const key = openRoomKey({ envelope, roomId, epoch, adminSignPub, me: identity });
 * ```
 */
export function openRoomKey(a: {
  envelope: Uint8Array;
  roomId: string;
  epoch: number;
  adminSignPub: Uint8Array;
  me: { signPub: Uint8Array; kexPub: Uint8Array; kexPriv: Uint8Array };
}): Uint8Array {
  if (a.envelope.length < 64 + 48) throw new RoomKeyError("sealed key too short");
  const sealed = a.envelope.subarray(0, a.envelope.length - 64);
  const sig = a.envelope.subarray(a.envelope.length - 64);
  if (!verifySignature(a.adminSignPub, signedPart(a.roomId, a.epoch, a.me.signPub, sealed), sig)) {
    throw new RoomKeyError("sealed key is not signed by the admin it names");
  }
  const plain = openBox(sealed, a.me.kexPub, a.me.kexPriv);
  if (!plain) throw new RoomKeyError("sealed key does not open with this identity");
  const r = new ByteReader(plain);
  try {
    const room = new TextDecoder().decode(r.take(r.u16()));
    const epoch = r.u32();
    const key = r.take(32);
    if (room !== a.roomId || epoch !== a.epoch || r.remaining !== 0) {
      throw new RoomKeyError("sealed key is for another room or epoch");
    }
    return key.slice();
  } catch (err) {
    if (err instanceof RoomKeyError) throw err;
    throw new RoomKeyError("sealed key is malformed");
  }
}
