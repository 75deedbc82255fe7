/**
 * The SQLite store's rows: turning result rows into the contract's types and
 * records into statement arguments, and libsql's failures into store errors.
 *
 * @module
 */

import type { InValue, Row } from "@libsql/client";
import {
  type BlobMeta,
  type Member,
  type Room,
  type SealedKey,
  StoreError,
  StoreUnavailableError,
  type User,
} from "./store.ts";

/** Percent-encodes each path segment, since libsql decodes the URL path. */

/** SQLite extended result codes for the constraints the batches can trip. */
export const SQLITE_CONSTRAINT_FOREIGNKEY = 787;
/** A primary key taken. */
export const SQLITE_CONSTRAINT_PRIMARYKEY = 1555;
/** A unique column taken. */
export const SQLITE_CONSTRAINT_UNIQUE = 2067;

export function fileUrl(abs: string): string {
  return "file://" + abs.split("/").map(encodeURIComponent).join("/");
}

export function unavailable(context: string, e: unknown): StoreUnavailableError {
  const detail = e instanceof Error ? e.message : String(e);
  return new StoreUnavailableError(`${context}: ${detail}`, { cause: e });
}

/** Backend failures become StoreUnavailableError; programming errors pass through. */
export function mapError(e: unknown): unknown {
  if (e instanceof StoreError) return e;
  const code = (e as { code?: unknown })?.code;
  if (typeof code === "string" && code.startsWith("SQLITE_CONSTRAINT")) return e;
  if (typeof code === "string" && (code.startsWith("SQLITE_") || code === "CLIENT_CLOSED")) {
    return unavailable("store backend error", e);
  }
  return e;
}

export function rawCode(e: unknown): number | undefined {
  const c = e as { rawCode?: unknown; cause?: { rawCode?: unknown } } | null;
  const v = c?.rawCode ?? c?.cause?.rawCode;
  return typeof v === "number" ? v : undefined;
}

export function bit(b: boolean): number {
  return b ? 1 : 0;
}

/** A room row's columns in the order of the INSERTs into `rooms` (epoch starts at 0). */
export function roomRowArgs(row: Room): InValue[] {
  return [
    row.id,
    row.subject,
    bit(row.policy.encrypt),
    bit(row.policy.sign),
    bit(row.policy.persist),
    row.createdBy,
    row.createdAt,
  ];
}

export function str(v: unknown): string {
  return String(v);
}

export function strOrNull(v: unknown): string | null {
  return v === null || v === undefined ? null : String(v);
}

export function toUser(r: Row): User {
  return {
    signPub: str(r.sign_pub),
    kexPub: strOrNull(r.kex_pub),
    kexSig: strOrNull(r.kex_sig),
    handle: str(r.handle),
    role: str(r.role) as User["role"],
    status: str(r.status) as User["status"],
    createdAt: Number(r.created_at),
    ...(r.max_connections === null || r.max_connections === undefined
      ? {}
      : { maxConnections: Number(r.max_connections) }),
  };
}

export function toRoom(r: Row): Room {
  return {
    id: str(r.id),
    subject: str(r.subject),
    policy: {
      encrypt: Number(r.encrypt) === 1,
      sign: Number(r.sign) === 1,
      persist: Number(r.persist) === 1,
    },
    createdBy: str(r.created_by),
    createdAt: Number(r.created_at),
    epoch: Number(r.epoch),
  };
}

export function toMember(r: Row): Member {
  return {
    roomId: str(r.room_id),
    signPub: str(r.sign_pub),
    role: str(r.role) as Member["role"],
    addedBy: str(r.added_by),
    addedAt: Number(r.added_at),
    change: strOrNull(r.change),
  };
}

export function toSealedKey(r: Row): SealedKey {
  return {
    roomId: str(r.room_id),
    epoch: Number(r.epoch),
    recipient: str(r.recipient),
    sealed: str(r.sealed),
    sealedBy: str(r.sealed_by),
    createdAt: Number(r.created_at),
  };
}

export function toBlobMeta(r: Row): BlobMeta {
  return {
    id: str(r.id),
    roomId: str(r.room_id),
    owner: str(r.owner),
    size: Number(r.size),
    createdAt: Number(r.created_at),
  };
}
