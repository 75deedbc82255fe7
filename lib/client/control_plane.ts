/**
 * The control plane as the client sees it: signed HTTP requests, with
 * failover across a list of seed URLs (any node of a cluster serves the same
 * state), and TLS pinned to a CA when one is given.
 *
 * @module
 */

import { type PinnedFetch, pinnedFetch } from "../platform/mod.ts";
import type { Ed25519KeyPair } from "../crypto/ed25519.ts";
import { pathAndQueryOfUrl, signRequest } from "../auth/request_signing.ts";
import type { RoomSummary, RoomView, SealedKeyView, UserView } from "../api/types.ts";
import type { SignedChange } from "../e2e/membership.ts";
import { ControlPlaneError, UnreachableError } from "./errors.ts";

export type { RoomSummary, RoomView, SealedKeyView, UserView } from "../api/types.ts";

/** Options for {@linkcode ControlPlaneClient}. */
export interface ControlPlaneOptions {
  urls: string[];
  signer: Ed25519KeyPair;
  /** PEM text of the CA that signed the servers' certificates. */
  caCert?: string;
  /** Per attempt; default 10 s. */
  timeoutMs?: number;
  /**
   * How long a request keeps being sent again while the control plane
   * answers a retryable 503 (`store_unavailable`, `outcome_unknown`, …: a
   * stream leader being elected takes seconds) or a write times out; default
   * 15 s, 0: never. See {@linkcode ControlPlaneClient}.
   */
  retryBudgetMs?: number;
}

/**
 * 503 answers after which the same request may simply be sent again: the
 * server did nothing (`store_unavailable`, `auth_unavailable`,
 * `stream_unavailable` after its rollback, `starting`, `record_too_new`), or does not know
 * (`outcome_unknown`, then reconciled, see below). Never `cluster_degraded`:
 * that lasts until an operator brings a node back, and its `Retry-After`
 * says so.
 */
const RETRYABLE_503 = new Set([
  "store_unavailable",
  "outcome_unknown",
  "auth_unavailable",
  "stream_unavailable",
  "starting",
  // An older node mid-upgrade that cannot read a record a newer one wrote:
  // the next seed may be a newer node (docs/operations.md "Upgrades").
  "record_too_new",
]);

/** Pause before the next try: the answer's `Retry-After` (capped), else 250 ms doubling to 2 s. */
function pauseMs(attempt: number, retryAfter: string | null): number {
  const asked = retryAfter !== null && /^\d{1,4}$/.test(retryAfter) ? Number(retryAfter) * 1000 : 0;
  return Math.min(2000, Math.max(asked, 250 * 2 ** Math.min(attempt, 3)));
}

/** A request's final answer: status, headers and its JSON body (null when none). */
interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
  /** The raw bytes (for a blob's download). */
  bytes: Uint8Array;
}

/**
 * What a write does when a retry follows an unknown outcome (a 503
 * `outcome_unknown`, or a timeout after the request was sent): the retry's
 * refusal may be the server seeing the write the first try made.
 */
interface Reconcile<T> {
  /** Statuses of a retry that may mean "already done" (409, or 404 for a deletion). */
  statuses: number[];
  /** The stored result if it is the one this client wrote; null: a real refusal. */
  check(): Promise<Mine<T> | null>;
}

/** A result found to be this client's own earlier write. */
type Mine<T> = { value: T };

/** Thrown (and caught) inside the retry loop: a try that was sent and not answered. */
class SentNoAnswer extends Error {}

/**
 * Signed requests to the control plane.
 *
 * Retries: a request answered with a retryable 503 (or, for any request, no
 * answer from any seed) is sent again, to the next seed first, until
 * `retryBudgetMs` runs out. A write whose first try may have happened (503
 * `outcome_unknown`, or a timeout after it was sent) is then reconciled:
 * the retry's 409 (404 for a deletion) is success when what the server
 * holds is what this client wrote: the same signed genesis or change at its
 * seq, a deletion that is done, a blob it can read back under the id the
 * server named. Anything else stays the refusal it is.
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
  // The fetch that trusts the pinned CA (or the system roots without one).
  #http: Promise<PinnedFetch>;
  #preferred = 0;
  #timeoutMs: number;
  #retryBudgetMs: number;

  constructor(opts: ControlPlaneOptions) {
    if (opts.urls.length === 0) throw new UnreachableError("no control-plane URL given");
    this.#urls = opts.urls.map((u) => u.replace(/\/+$/, ""));
    this.#signer = opts.signer;
    this.#http = pinnedFetch(opts.caCert);
    // A failure to set it up is reported by the first request that awaits it.
    this.#http.catch(() => {});
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#retryBudgetMs = opts.retryBudgetMs ?? 15_000;
  }

  /** The base URL of the node that answered last. */
  get currentUrl(): string {
    return this.#urls[this.#preferred];
  }

  /**
   * Sends a signed request, trying each seed once starting with the one that
   * answered last. HTTP errors are answers (no failover, no retry); only a
   * network failure moves on to the next seed.
   */
  async request(
    method: string,
    path: string,
    body?: unknown,
    raw?: { bytes: Uint8Array },
  ): Promise<Response> {
    const payload = raw?.bytes ??
      (body === undefined ? undefined : new TextEncoder().encode(JSON.stringify(body)));
    return (await this.#send(method, path, payload, raw !== undefined)).res;
  }

  /** One pass over the seeds; `timedOut`: some seed was sent the request and never answered. */
  async #send(
    method: string,
    path: string,
    payload: Uint8Array | undefined,
    binary: boolean,
  ): Promise<{ res: Response; timedOut: boolean }> {
    let lastErr: unknown;
    let timedOut = false;
    for (let i = 0; i < this.#urls.length; i++) {
      const at = (this.#preferred + i) % this.#urls.length;
      const url = `${this.#urls[at]}${path}`;
      const headers = signRequest(this.#signer, {
        method,
        pathAndQuery: pathAndQueryOfUrl(url),
        body: payload,
      });
      try {
        const http = await this.#http;
        const res = await http.fetch(url, {
          method,
          headers: {
            ...headers,
            ...(payload
              ? { "content-type": binary ? "application/octet-stream" : "application/json" }
              : {}),
          },
          body: payload as Uint8Array<ArrayBuffer> | undefined,
          signal: AbortSignal.timeout(this.#timeoutMs),
          // The node never redirects. Followed, a redirect would carry these
          // signed headers (and the body) wherever the answer pointed: the
          // signature binds method, path and body, not the host, so another
          // node could be made to apply the request.
          redirect: "manual",
        });
        this.#preferred = at;
        return { res, timedOut };
      } catch (err) {
        lastErr = err;
        // A refused connection never reached the server; a timeout may have.
        if ((err as Error)?.name === "TimeoutError") timedOut = true;
      }
    }
    const err = new UnreachableError(
      `no control-plane node answered (${this.#urls.join(", ")}): ${(lastErr as Error)?.message}`,
      { cause: lastErr },
    );
    if (timedOut) throw new SentNoAnswer(err.message, { cause: err });
    throw err;
  }

  /**
   * A request with the retries described on the class; resolves with the
   * final answer (or a reconciled result), never throws for an HTTP status.
   */
  async #exchange<T>(
    method: string,
    path: string,
    opts: {
      body?: unknown;
      raw?: Uint8Array;
      reconcile?: Reconcile<T>;
      /** After a 503 `outcome_unknown`: look for the write the body names. */
      resolveUnknown?: (body: Record<string, unknown>) => Promise<Mine<T> | null>;
    } = {},
  ): Promise<{ answer: Answer } | { reconciled: T }> {
    const payload = opts.raw ??
      (opts.body === undefined ? undefined : new TextEncoder().encode(JSON.stringify(opts.body)));
    const deadline = Date.now() + this.#retryBudgetMs;
    let unknown = false;
    for (let attempt = 0;; attempt++) {
      let res: Response;
      try {
        ({ res } = await this.#send(method, path, payload, opts.raw !== undefined));
      } catch (err) {
        const sent = err instanceof SentNoAnswer;
        unknown ||= sent;
        const cause = sent ? (err as Error).cause : err;
        const pause = pauseMs(attempt, null);
        if (Date.now() + pause >= deadline) throw cause;
        await new Promise((r) => setTimeout(r, pause));
        continue;
      }
      const bytes = new Uint8Array(await res.arrayBuffer());
      let body: unknown = null;
      if ((res.headers.get("content-type") ?? "").startsWith("application/json")) {
        try {
          body = JSON.parse(new TextDecoder().decode(bytes));
        } catch { /* reported by the caller as a non-JSON answer */ }
      }
      const code = (body as { error?: unknown } | null)?.error;
      if (res.status === 503 && typeof code === "string" && RETRYABLE_503.has(code)) {
        if (code === "outcome_unknown") {
          unknown = true;
          // A failed look-up leaves the outcome unknown, not refused: the
          // write is retried, and its own idempotence settles it.
          const found = await opts.resolveUnknown?.(body as Record<string, unknown>)
            .catch(() => null);
          if (found) return { reconciled: found.value };
        }
        const pause = pauseMs(attempt, res.headers.get("retry-after"));
        if (Date.now() + pause < deadline) {
          // Another node may be past what holds this one up.
          this.#preferred = (this.#preferred + 1) % this.#urls.length;
          await new Promise((r) => setTimeout(r, pause));
          continue;
        }
      }
      if (unknown && opts.reconcile?.statuses.includes(res.status)) {
        // A check that cannot answer proves nothing: the refusal stands.
        const mine = await opts.reconcile.check().catch(() => null);
        if (mine) return { reconciled: mine.value };
      }
      return { answer: { status: res.status, headers: res.headers, body, bytes } };
    }
  }

  /** A JSON request: the parsed body, or {@linkcode ControlPlaneError}. */
  async #json<T>(
    method: string,
    path: string,
    body?: unknown,
    reconcile?: Reconcile<T>,
  ): Promise<T> {
    const out = await this.#exchange<T>(method, path, { body, reconcile });
    if ("reconciled" in out) return out.reconciled;
    return answerOf<T>(out.answer);
  }

  getUser(signPub: string): Promise<UserView> {
    return this.#json("GET", `/v1/users/${signPub}`);
  }

  /** The active users whose handle is exactly `handle` (several may share one). */
  async usersByHandle(handle: string): Promise<UserView[]> {
    const r = await this.#json<{ users: UserView[] }>(
      "GET",
      `/v1/users?handle=${encodeURIComponent(handle)}`,
    );
    return r.users;
  }

  putKex(kexPub: string, kexSig: string): Promise<{ changed: boolean }> {
    return this.#json("PUT", "/v1/me/kex", { kexPub, kexSig });
  }

  /**
   * Creates a room from its signed genesis change. After an unknown
   * outcome, a retry's 409 is success if the room's change 0 is this one.
   */
  createRoom(change: SignedChange): Promise<RoomView> {
    const id = /^room: ([0-9a-f]{32})$/m.exec(change.text)?.[1];
    return this.#json("POST", "/v1/rooms", { change }, {
      statuses: [409],
      check: async () => {
        if (id === undefined) return null;
        const view = await this.getRoom(id);
        return sameChange(view.changes[0], change) ? { value: view } : null;
      },
    });
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

  /**
   * Appends a signed membership change. After an unknown outcome, a retry's
   * 409 is success if the room's log holds this very change (same text, so
   * the same seq, and the same signature).
   */
  postChange(id: string, change: SignedChange): Promise<RoomView> {
    return this.#json("POST", `/v1/rooms/${encodeURIComponent(id)}/changes`, { change }, {
      statuses: [409],
      check: async () => {
        const view = await this.getRoom(id);
        return view.changes.some((c) => sameChange(c, change)) ? { value: view } : null;
      },
    });
  }

  /**
   * Posts a change that removes the caller (leaving). After an unknown
   * outcome a retry's 404 is success: the room no longer answers to someone
   * who is not a member, which is what leaving was for.
   */
  async postLeave(id: string, change: SignedChange): Promise<void> {
    await this.#json("POST", `/v1/rooms/${encodeURIComponent(id)}/changes`, { change }, {
      statuses: [404, 409],
      check: async () => {
        const view = await this.getRoom(id).catch((err) => {
          if (err instanceof ControlPlaneError && err.status === 404) return null;
          throw err;
        });
        const left = view === null || view.changes.some((c) => sameChange(c, change));
        return left ? { value: undefined } : null;
      },
    });
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

  /** Deletes a room; after an unknown outcome, a retry's 404 means it is done. */
  deleteRoom(id: string): Promise<void> {
    return this.#json("DELETE", `/v1/rooms/${encodeURIComponent(id)}`, undefined, {
      statuses: [404],
      check: () => Promise.resolve({ value: undefined }),
    });
  }

  /**
   * Uploads a blob. The server picks its id; after a 503 `outcome_unknown`
   * (which names that id) the blob is looked for there before it is
   * uploaded again, so a stored upload is not made twice.
   */
  async putBlob(roomId: string, bytes: Uint8Array): Promise<{ id: string; size: number }> {
    const out = await this.#exchange<{ id: string; size: number }>(
      "POST",
      `/v1/rooms/${encodeURIComponent(roomId)}/blobs`,
      {
        raw: bytes,
        resolveUnknown: async (body) => {
          const id = body.id;
          if (typeof id !== "string" || !/^[0-9a-f]{32}$/.test(id)) return null;
          // Not readable (yet): not known to be ours, so the upload is retried.
          const stored = await this.getBlob(id).catch(() => null);
          const mine = stored !== null && sameBytes(stored, bytes);
          return mine ? { value: { id, size: bytes.length } } : null;
        },
      },
    );
    if ("reconciled" in out) return out.reconciled;
    return answerOf(out.answer);
  }

  async getBlob(id: string): Promise<Uint8Array> {
    const out = await this.#exchange<never>("GET", `/v1/blobs/${encodeURIComponent(id)}`);
    if ("reconciled" in out) return out.reconciled;
    if (out.answer.status !== 200) return answerOf(out.answer);
    return out.answer.bytes;
  }

  /** Deletes a blob; after an unknown outcome, a retry's 404 means it is done. */
  deleteBlob(id: string): Promise<void> {
    return this.#json("DELETE", `/v1/blobs/${encodeURIComponent(id)}`, undefined, {
      statuses: [404],
      check: () => Promise.resolve({ value: undefined }),
    });
  }

  close(): void {
    this.#http.then((h) => h.close(), () => {});
  }
}

/** The parsed body of a 2xx answer, else its {@linkcode ControlPlaneError}. */
function answerOf<T>(a: Answer): T {
  if (a.status === 204) return undefined as T;
  if (a.status < 200 || a.status > 299) {
    const e = a.body as { error?: string; message?: string } | null;
    const text = new TextDecoder().decode(a.bytes.subarray(0, 200));
    throw new ControlPlaneError(
      a.status,
      e?.error ?? "error",
      e?.message ?? text,
      retryAfterS(a.headers.get("retry-after")),
    );
  }
  return a.body as T;
}

function retryAfterS(value: string | null): number | undefined {
  return value !== null && /^\d{1,6}$/.test(value) ? Number(value) : undefined;
}

function sameChange(a: SignedChange | undefined, b: SignedChange): boolean {
  return a !== undefined && a.text === b.text && a.sig === b.sig;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
