/**
 * Driving the rooms API of a real `serve` the way a client would: signed
 * HTTP requests (`signedFetch`) and membership changes built and signed with
 * `lib/e2e/membership.ts`. Deliberately not the client library: the tests
 * must also be able to send what a correct client never would.
 *
 * @module
 */

import { signedFetch } from "../../lib/auth/request_signing.ts";
import {
  type ChangeBody,
  changeHash,
  signChange,
  type SignedChange,
  verifyLog,
} from "../../lib/e2e/membership.ts";
import type { Identity } from "../../lib/identity/identity.ts";
import { openSqliteStore } from "../../lib/store/sqlite.ts";
import type { Store } from "../../lib/store/store.ts";
import type { RoomView } from "../../server/rooms/state.ts";
import { assertEquals } from "./assert.ts";
import { type ServeUnderTest, startServe } from "./serve_process.ts";
import { openServeStore, storeArgs, type StoreKind } from "./serve_store.ts";

/** A serve in enforce mode and a handle on its SQLite file (for the allowlist). */
export interface Bus {
  s: ServeUnderTest;
  store: Store;
}

/**
 * Starts `serve --bus-auth enforce` on the `kind` store (SQLite by default;
 * KV with the internal identity persisted in its data dir) and opens that
 * store from the test, as another writer would.
 *
 * @example
 * ```ts
 * const bus = await startBus();
 * try { ... } finally { await stopBus(bus); }
 * ```
 */
export async function startBus(extraArgs: string[] = [], kind: StoreKind = "sqlite"): Promise<Bus> {
  if (kind === "sqlite") {
    const s = await startServe({ extraArgs: ["--bus-auth", "enforce", ...extraArgs] });
    return { s, store: await openSqliteStore(`${s.dataDir}/unibus.db`) };
  }
  const dataDir = await Deno.makeTempDir({ prefix: `unibus-bus-${kind}-` });
  const idFile = `${dataDir}/internal.id`;
  const s = await startServe({
    dataDir,
    extraArgs: ["--bus-auth", "enforce", ...storeArgs(kind, idFile), ...extraArgs],
  });
  // A data dir made here is removed here, after serve stopped.
  const stop = s.stop;
  s.stop = async () => {
    const status = await stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    return status;
  };
  return { s, store: await openServeStore(s, kind, idFile) };
}

/**
 * Closes the store and stops serve, asserting a clean exit.
 *
 * @example
 * ```ts
 * await stopBus(bus);
 * ```
 */
export async function stopBus(bus: Bus): Promise<void> {
  await bus.store.close();
  assertEquals((await bus.s.stop()).code, 0);
}

/** An answer: status plus the parsed JSON body (null when there is none). */
export interface Answer<T = Record<string, unknown>> {
  status: number;
  body: T;
}

/**
 * Signed requests as one identity.
 *
 * @example
 * ```ts
 * const alice = as(bus, aliceIdentity);
 * const { status, body } = await alice.post("/v1/rooms", { change });
 * ```
 */
export function as(bus: Bus, who: Identity) {
  const call = async <T>(method: string, path: string, body?: unknown): Promise<Answer<T>> => {
    const res = await signedFetch(who.signer, `${bus.s.httpUrl}${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
  };
  return {
    get: <T = Record<string, unknown>>(path: string) => call<T>("GET", path),
    post: <T = Record<string, unknown>>(path: string, body: unknown) => call<T>("POST", path, body),
    put: <T = Record<string, unknown>>(path: string, body: unknown) => call<T>("PUT", path, body),
    del: <T = Record<string, unknown>>(path: string) => call<T>("DELETE", path),
    /** A signed request with any body and headers; the raw response. */
    raw: (
      path: string,
      init: { method: string; body?: Uint8Array | string; headers?: HeadersInit },
    ) => signedFetch(who.signer, `${bus.s.httpUrl}${path}`, init),
  };
}

/**
 * A fresh room id: 32 random lowercase hex characters.
 *
 * @example
 * ```ts
 * const id = newRoomId();
 * ```
 */
export function newRoomId(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * The signed `create` change of a new room, by `creator`.
 *
 * @example
 * ```ts
 * const change = genesis(alice, { subject: "chat.ops" });
 * ```
 */
export function genesis(
  creator: Identity,
  opts: { subject: string; room?: string; persist?: boolean },
): SignedChange {
  const body: ChangeBody = {
    room: opts.room ?? newRoomId(),
    seq: 0,
    prev: "0".repeat(64),
    op: "create",
    subject: opts.subject,
    policy: { encrypt: true, sign: true, persist: opts.persist ?? false },
    member: creator.signPubHex,
    kex: creator.kexPubHex,
    kexSig: creator.kexSigHex,
    role: "admin",
    epoch: 0,
    by: creator.signPubHex,
    at: Date.now(),
  };
  return signChange(body, creator.signer);
}

/** The public keys a change names for a member. */
export interface MemberKeys {
  signPubHex: string;
  kexPubHex: string;
  kexSigHex: string;
}

/**
 * The next change of a room (as its view shows it), signed by `by`.
 *
 * @example
 * ```ts
 * const change = nextChange(view, alice, "add", bob);
 * ```
 */
export function nextChange(
  view: RoomView,
  by: Identity,
  op: "add" | "remove",
  member: MemberKeys,
  role: "admin" | "member" = "member",
): SignedChange {
  // Built from the verified log, as a client must, not from the view's fields.
  const state = verifyLog(view.id, view.changes);
  const body: ChangeBody = {
    room: view.id,
    seq: state.seq + 1,
    prev: changeHash(view.changes[view.changes.length - 1]),
    op,
    member: member.signPubHex,
    ...(op === "add" ? { kex: member.kexPubHex, kexSig: member.kexSigHex, role } : {}),
    epoch: state.epoch + 1,
    by: by.signPubHex,
    at: Date.now(),
  };
  return signChange(body, by.signer);
}

/**
 * Lowercase hex of `n` random bytes, base64 of them as a stand-in sealed key.
 *
 * @example
 * ```ts
 * const sealed = randomBase64(80);
 * ```
 */
export function randomBase64(n: number): string {
  const b = crypto.getRandomValues(new Uint8Array(n));
  return btoa(String.fromCharCode(...b));
}

/**
 * `p`'s value if it settles within `ms`, else null; never leaves a timer behind.
 *
 * @example
 * ```ts
 * const closed = await within(3000, nc.closed());
 * ```
 */
export async function within<T>(ms: number, p: Promise<T>): Promise<T | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([p, new Promise<null>((r) => timer = setTimeout(() => r(null), ms))]);
  } finally {
    clearTimeout(timer);
  }
}
