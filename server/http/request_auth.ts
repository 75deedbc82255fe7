/**
 * Authentication of control-plane requests: every route except the public
 * ones (`/healthz`) must carry an Ed25519 signature by a registered, active
 * user over the request (see `lib/auth/request_signing.ts` and
 * `docs/protocol.md`), fresh and never seen before.
 *
 * The middleware fails closed: when the store cannot answer who a key
 * belongs to or whether a nonce was used, the request is refused with 503,
 * never passed on. It also bounds what an unauthenticated body can cost:
 * nothing of it is read before the headers, the clock and the key pass, and
 * large ones only within an {@linkcode UploadGate}.
 *
 * @module
 */

import {
  assertFresh,
  DEFAULT_SKEW_MS,
  parseAuthHeaders,
  RequestAuthError,
  verifyRequestSignature,
} from "../../lib/auth/request_signing.ts";
import type { Logger } from "../../lib/log.ts";
import type { Store } from "../../lib/store/store.ts";
import { DEFAULT_LIMITS } from "../limits.ts";
import { type BodyRate, declaredLength, HttpError, type Middleware, readBody } from "./app.ts";
import { LARGE_BODY_BYTES, sourceOf, type UploadBounds, UploadGate } from "./upload_gate.ts";

/**
 * The pace a large body must keep: 64 KiB/s on average, after 2 s in which
 * any pace goes. Without it, a sender trickling a byte now and then held an
 * upload place until the body deadline (up to 30 s) at no cost; with it,
 * holding all 16 of a node's places costs about 1 MiB/s of sustained
 * upload. The deadline alone already asks 8 MiB in 30 s (about 270 KiB/s)
 * of the largest blob, so an honest client that can finish in time is not
 * cut by this rate except on very slow links with mid-size bodies.
 */
export const MIN_UPLOAD_RATE: Readonly<BodyRate> = { bytesPerSecond: 64 * 1024, graceMs: 2000 };

/** Options for {@linkcode requireSignedRequests}. */
export interface RequestAuthOptions {
  /** Allowlist (users) and nonce memory. */
  store: Store;
  /** Accepted clock difference in ms, either way; 30 s when unset. */
  skewMs?: number;
  /** Clock, for tests; `Date.now` when unset. */
  now?: () => number;
  /**
   * Large bodies read at once, per user and source, per source and in total
   * (or a gate to share); the serve defaults (`DEFAULT_LIMITS`) when unset.
   */
  uploads?: UploadBounds | UploadGate;
  /** The pace a large body must keep; {@linkcode MIN_UPLOAD_RATE} when unset. */
  minUploadRate?: BodyRate;
}

// One message for every refusal: the code is all a caller learns, so a probe
// cannot tell e.g. which header was wrong or how far off its clock is.
const REFUSED = "request authentication failed";

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

// Deno builds req.url as "http://" + Host + request target, unnormalised. The
// signed path is the request target, so take it verbatim after the authority;
// refuse an authority with URL syntax in it ("a#", "a/b?", "u@h"), which
// would make the router (new URL) and the signature see different paths.
const TARGET = /^https?:\/\/([A-Za-z0-9._~:[\]-]*)(\/.*)$/s;

function requestTarget(url: string): string | null {
  const m = TARGET.exec(url);
  return m ? m[2] : null;
}

/**
 * Middleware that admits a non-public request only if it is signed by an
 * active user's key, fresh, and not a replay; sets `ctx.caller` to the
 * signer's public key (hex).
 *
 * Everything that can be judged without the body is judged before a byte of
 * it is read: the declared length (by the app, 413), the headers' form, the
 * clock, the key (registered and active), and for a large body a place in the
 * {@linkcode UploadGate} (429). Only then is the body streamed under the
 * route's cap and a deadline, and the signature over it checked; the nonce is
 * written last, so that unauthenticated callers cannot fill the nonce table.
 *
 * Answers: 401 `unauthenticated` | `stale_request` | `unknown_key` |
 * `bad_signature` | `replayed`, 403 `revoked`, 408 `body_timeout` |
 * `body_too_slow` (a large body below {@linkcode MIN_UPLOAD_RATE}), 413
 * `too_large`, 429 `too_many_uploads`, 503 `auth_unavailable` when the store
 * fails.
 *
 * @example
 * ```ts
 * const handler = createApp({
 *   log,
 *   routes,
 *   middleware: [accessLog, requireSignedRequests({ store })],
 * });
 * ```
 */
export function requireSignedRequests(opts: RequestAuthOptions): Middleware {
  const store = opts.store;
  const skewMs = opts.skewMs ?? DEFAULT_SKEW_MS;
  const now = opts.now ?? Date.now;
  if (!Number.isSafeInteger(skewMs) || skewMs <= 0) {
    throw new RangeError("skewMs must be a positive integer");
  }
  const gate = opts.uploads instanceof UploadGate ? opts.uploads : new UploadGate(
    opts.uploads ?? {
      perUser: DEFAULT_LIMITS.uploadsPerUser,
      perSource: DEFAULT_LIMITS.uploadsPerSource,
      total: DEFAULT_LIMITS.uploadsTotal,
    },
  );
  const minRate = opts.minUploadRate ?? MIN_UPLOAD_RATE;

  return async (req, ctx, next) => {
    if (ctx.isPublic) return next();

    const path = ctx.url.pathname;
    const refuse = (status: number, code: string, fields: Record<string, unknown> = {}) => {
      ctx.log.audit("request.denied", "request refused", {
        code,
        method: req.method,
        path,
        from: ctx.remoteAddr,
        // What the request said it was, unproven (bounded: it is the sender's text).
        claimedKey: req.headers.get("x-unibus-key")?.slice(0, 64),
        ...fields,
      });
      return new HttpError(status, code, REFUSED);
    };
    const refuseAuth = (e: unknown, fields: Record<string, unknown> = {}) => {
      if (e instanceof RequestAuthError) return refuse(401, e.code, fields);
      return e;
    };

    // Every store call here fails closed: 503, the reason in the log, never
    // an admitted request.
    const fromStore = async <T>(step: string, call: () => Promise<T>): Promise<T> => {
      try {
        return await call();
      } catch (e) {
        ctx.log.error("request authentication unavailable", {
          step,
          error: describe(e),
          method: req.method,
          path,
        });
        throw new HttpError(503, "auth_unavailable", "authentication is temporarily unavailable");
      }
    };

    const target = requestTarget(req.url);
    if (target === null) throw refuse(401, "unauthenticated", { reason: "unusable request URL" });

    // Before the body is read, so junk and stale requests cost no upload.
    let claimed;
    try {
      claimed = parseAuthHeaders(req.headers);
      assertFresh(claimed.timestamp, now(), skewMs);
    } catch (e) {
      throw refuseAuth(e);
    }

    // The key is looked up before the body is read, so a key nobody
    // registered never gets a byte of its body read. The price: a stranger
    // can tell a registered key (answered after its body) from an unknown
    // one (answered before). Public keys are public, and the alternative,
    // reading every stranger's body to keep that secret, is what let
    // anyone make the node buffer megabytes.
    const key = claimed.key;
    const status = (await fromStore("getUser", () => store.getUser(key)))?.status;
    if (status === undefined) throw refuse(401, "unknown_key", { key });
    // Anything but "active" is refused, so a status added later fails closed.
    if (status !== "active") throw refuse(403, "revoked", { key });

    // A registered key is no proof: anyone can name one. A large body is
    // therefore read only within the upload gate, which bounds how many such
    // bodies one source, one key from one source, and all together have in
    // memory at once (upload_gate.ts says why the source counts).
    const declared = declaredLength(req);
    const large = req.body !== null && !(declared !== null && declared <= LARGE_BODY_BYTES);
    let release = () => {};
    if (large) {
      const source = sourceOf(ctx.remoteAddr);
      try {
        release = gate.enter(key, source);
      } catch (e) {
        ctx.log.audit("request.denied", "request refused", {
          code: "too_many_uploads",
          key,
          source,
          method: req.method,
          path,
        });
        throw e;
      }
      // Holding a place must cost the sender bandwidth, not just patience.
      ctx.minBodyRate = minRate;
    }
    try {
      // The body must be complete while the signature is still fresh (it is
      // checked again below); past that instant, waiting longer is pointless.
      // Counted from the earlier of the claimed time and now: a timestamp up
      // to `skewMs` in the future is accepted for clock drift, and counting
      // from it let one request hold an upload place for twice the window
      // (~60 s). It is stale at timestamp + skew anyway, so never later.
      ctx.bodyDeadline = Math.min(claimed.timestamp, now()) + skewMs;
      // readBody enforces the route's limit (413) and caches the bytes in
      // ctx.body, so the handler sees exactly the bytes that were signed.
      const body = await readBody(req, ctx);

      // One instant for the final freshness check and the nonce write: if the
      // nonce were written "as of" a later time it could already count as
      // expired, and two concurrent copies of a request would both be admitted.
      const checkedAt = now();
      let nonce: string;
      let timestamp: number;
      try {
        ({ nonce, timestamp } = verifyRequestSignature(
          { method: req.method, pathAndQuery: target, headers: req.headers, body },
          { now: checkedAt, skewMs },
        ));
      } catch (e) {
        throw refuseAuth(e, { key });
      }

      // Kept until timestamp + skew: from then on assertFresh refuses the
      // request anyway, so the nonce table only holds what could still replay.
      const fresh = await fromStore(
        "rememberNonce",
        () => store.rememberNonce(`${key}:${nonce}`, timestamp + skewMs, checkedAt),
      );
      if (!fresh) throw refuse(401, "replayed", { key });

      // The pruner deletes nonces at their expiry by the wall clock. A request
      // checked just before expiry whose nonce write lands after a prune would
      // find the table empty, so a copy of it could be admitted twice; after
      // the write, the request must still be inside the window.
      try {
        assertFresh(timestamp, now(), skewMs);
      } catch (e) {
        throw refuseAuth(e, { key });
      }

      ctx.caller = key;
      // The place is held until the handler is done with the bytes (a blob
      // is in memory until it is stored).
      return await next();
    } finally {
      release();
    }
  };
}

/**
 * Deletes expired nonces every `intervalMs`; failures are logged and retried
 * on the next tick, never thrown. Returns a function that stops the timer;
 * call it on shutdown, or the interval keeps the process alive.
 *
 * @example
 * ```ts
 * const stopPruner = startNoncePruner(store, log);
 * // … on shutdown:
 * stopPruner();
 * ```
 */
export function startNoncePruner(store: Store, log: Logger, intervalMs = 60_000): () => void {
  if (!Number.isFinite(intervalMs) || intervalMs <= 0) {
    throw new RangeError("intervalMs must be positive");
  }
  let running = false;
  let stopped = false;
  const tick = async () => {
    // A slow store must not pile up overlapping deletes.
    if (running || stopped) return;
    running = true;
    try {
      const removed = await store.pruneNonces(Date.now());
      if (removed > 0) log.debug("nonces pruned", { removed });
    } catch (e) {
      log.warn("nonce pruning failed", { error: describe(e) });
    } finally {
      running = false;
    }
  };
  // Not unref'd: the pruner lives as long as the server that owns it, and
  // callers stop it explicitly on shutdown.
  const timer = setInterval(() => void tick(), intervalMs);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
