/**
 * The control plane as the client sees it: signed HTTP requests, with
 * failover across a list of seed URLs (any node of a cluster serves the same
 * state), and TLS pinned to a CA when one is given.
 *
 * @module
 */

import type { Ed25519KeyPair } from "../crypto/ed25519.ts";
import { pathAndQueryOfUrl, signRequest } from "../auth/request_signing.ts";
import type { SignedChange } from "../e2e/membership.ts";
import { ControlPlaneError, UnreachableError } from "./errors.ts";

/** A room as the control plane reports it (unverified: check `changes`). */
export interface RoomView {
  id: string;
  subject: string;
  policy: { encrypt: boolean; sign: boolean; persist: boolean };
  epoch: number;
  createdBy: string;
  createdAt: number;
  members: Array<{ signPub: string; role: "admin" | "member" }>;
  changes: SignedChange[];
  stream: string | null;
}

/** A room as `GET /v1/rooms?view=summary` lists it. */
export type RoomSummary = Pick<RoomView, "id" | "subject" | "policy" | "epoch">;

/** A user's public record. */
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

/** Options for {@linkcode ControlPlaneClient}. */
export interface ControlPlaneOptions {
  urls: string[];
  signer: Ed25519KeyPair;
  /** PEM text of the CA that signed the servers' certificates. */
  caCert?: string;
  timeoutMs?: number;
}

/**
 * Signed requests to the control plane.
 *
 * @example
 * ```ts
 * const cp = new ControlPlaneClient({ urls: ["http://127.0.0.1:8470"], signer: identity.signer });
 * const rooms = await cp.listRoomSummaries();
 * ```
 */
export class ControlPlaneClient {
  #urls: string[];
  #signer: Ed25519KeyPair;
  #http: Deno.HttpClient | undefined;
  #preferred = 0;
  #timeoutMs: number;

  constructor(opts: ControlPlaneOptions) {
    if (opts.urls.length === 0) throw new UnreachableError("no control-plane URL given");
    this.#urls = opts.urls.map((u) => u.replace(/\/+$/, ""));
    this.#signer = opts.signer;
    this.#http = opts.caCert ? Deno.createHttpClient({ caCerts: [opts.caCert] }) : undefined;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /** The base URL of the node that answered last. */
  get currentUrl(): string {
    return this.#urls[this.#preferred];
  }

  /**
   * Sends a signed request, trying each seed once starting with the one that
   * answered last. HTTP errors are answers (no failover); only a network
   * failure moves on to the next seed.
   */
  async request(
    method: string,
    path: string,
    body?: unknown,
    raw?: { bytes: Uint8Array },
  ): Promise<Response> {
    const payload = raw?.bytes ??
      (body === undefined ? undefined : new TextEncoder().encode(JSON.stringify(body)));
    let lastErr: unknown;
    for (let i = 0; i < this.#urls.length; i++) {
      const at = (this.#preferred + i) % this.#urls.length;
      const url = `${this.#urls[at]}${path}`;
      const headers = signRequest(this.#signer, {
        method,
        pathAndQuery: pathAndQueryOfUrl(url),
        body: payload,
      });
      try {
        const res = await fetch(url, {
          method,
          headers: {
            ...headers,
            ...(payload
              ? { "content-type": raw ? "application/octet-stream" : "application/json" }
              : {}),
          },
          body: payload as Uint8Array<ArrayBuffer> | undefined,
          client: this.#http,
          signal: AbortSignal.timeout(this.#timeoutMs),
        });
        this.#preferred = at;
        return res;
      } catch (err) {
        lastErr = err;
      }
    }
    throw new UnreachableError(
      `no control-plane node answered (${this.#urls.join(", ")}): ${(lastErr as Error)?.message}`,
      { cause: lastErr },
    );
  }

  async #json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.request(method, path, body);
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch { /* not JSON: reported below */ }
    if (!res.ok) {
      const e = parsed as { error?: string; message?: string } | null;
      throw new ControlPlaneError(
        res.status,
        e?.error ?? "error",
        e?.message ?? text.slice(0, 200),
      );
    }
    return parsed as T;
  }

  getUser(signPub: string): Promise<UserView> {
    return this.#json("GET", `/v1/users/${signPub}`);
  }

  putKex(kexPub: string, kexSig: string): Promise<{ changed: boolean }> {
    return this.#json("PUT", "/v1/me/kex", { kexPub, kexSig });
  }

  createRoom(change: SignedChange): Promise<RoomView> {
    return this.#json("POST", "/v1/rooms", { change });
  }

  /** The caller's rooms without members or log: id, subject, policy, epoch. */
  async listRoomSummaries(): Promise<RoomSummary[]> {
    return (await this.#json<{ rooms: RoomSummary[] }>("GET", "/v1/rooms?view=summary")).rooms;
  }

  getRoom(id: string): Promise<RoomView> {
    return this.#json("GET", `/v1/rooms/${encodeURIComponent(id)}`);
  }

  getRoomBySubject(subject: string): Promise<RoomView> {
    return this.#json("GET", `/v1/rooms/by-subject/${encodeURIComponent(subject)}`);
  }

  postChange(id: string, change: SignedChange): Promise<RoomView> {
    return this.#json("POST", `/v1/rooms/${encodeURIComponent(id)}/changes`, { change });
  }

  putKeys(
    id: string,
    epoch: number,
    keys: Array<{ recipient: string; sealed: string }>,
  ): Promise<{ stored: number }> {
    return this.#json<{ stored: number }>(
      "PUT",
      `/v1/rooms/${encodeURIComponent(id)}/keys/${epoch}`,
      {
        keys,
      },
    );
  }

  async getKeys(id: string): Promise<SealedKeyView[]> {
    return (await this.#json<{ keys: SealedKeyView[] }>(
      "GET",
      `/v1/rooms/${encodeURIComponent(id)}/keys`,
    ))
      .keys;
  }

  deleteRoom(id: string): Promise<void> {
    return this.#json("DELETE", `/v1/rooms/${encodeURIComponent(id)}`);
  }

  async putBlob(roomId: string, bytes: Uint8Array): Promise<{ id: string; size: number }> {
    const res = await this.request(
      "POST",
      `/v1/rooms/${encodeURIComponent(roomId)}/blobs`,
      undefined,
      {
        bytes,
      },
    );
    const body = await res.json().catch(() => null);
    if (!res.ok) {
      throw new ControlPlaneError(res.status, body?.error ?? "error", body?.message ?? "");
    }
    return body;
  }

  async getBlob(id: string): Promise<Uint8Array> {
    const res = await this.request("GET", `/v1/blobs/${encodeURIComponent(id)}`);
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      throw new ControlPlaneError(res.status, body?.error ?? "error", body?.message ?? "");
    }
    return new Uint8Array(await res.arrayBuffer());
  }

  deleteBlob(id: string): Promise<void> {
    return this.#json("DELETE", `/v1/blobs/${encodeURIComponent(id)}`);
  }

  close(): void {
    this.#http?.close();
  }
}
