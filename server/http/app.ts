/**
 * The control plane's small HTTP core: routes as data, middleware for
 * cross-cutting concerns, and one error shape. Every failure leaves as JSON
 * `{ "error": "<code>", "message": "<one line>" }` with a 4xx, or a bare 500
 * that says nothing about internals: a stack trace is for the log, not the
 * caller.
 *
 * @module
 */

import type { Logger } from "../../lib/log.ts";

/**
 * An error that maps to an HTTP status and a stable code; `details` are
 * extra machine-readable fields of the JSON body (e.g. the broken `rule`, or
 * which quota, its maximum and the use).
 */
export class HttpError extends Error {
  override name = "HttpError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
    /** Response headers, e.g. `retry-after` on a 503. */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** What a handler gets besides the request. */
export interface RequestContext {
  /** `:name` segments of the matched route. */
  params: Record<string, string>;
  log: Logger;
  /** Largest request body this route accepts, in bytes. */
  maxBodyBytes: number;
  /** The authenticated caller's Ed25519 public key (hex), set by the auth middleware. */
  caller?: string;
  /** True when the matched route needs no authentication (`/healthz`). */
  isPublic: boolean;
  /** The matched route's pattern (e.g. `/v1/rooms/:id`), or null: a metrics label. */
  route: string | null;
  /** The request URL, parsed once by the app for the router, middleware and handlers. */
  url: URL;
  /** The raw body, once a middleware has read it (signature checks hash it). */
  body?: Uint8Array;
  /** When set (ms since the epoch), a body still arriving then is refused (408). */
  bodyDeadline?: number;
  /**
   * When set, a body that arrives slower than this (counted after a grace
   * period) is refused (408 `body_too_slow`).
   */
  minBodyRate?: BodyRate;
  /** The peer's IP address (from `Deno.serve`), when known. */
  remoteAddr?: string;
}

/** A minimum transfer rate for a request body. */
export interface BodyRate {
  /** Bytes per second the body must average once the grace is over. */
  bytesPerSecond: number;
  /** How long from the first read the body may arrive at any pace, ms. */
  graceMs: number;
}

// How often a body being read is checked against its deadline and rate.
const BODY_CHECK_MS = 250;

/** Answers one request. */
export type Handler = (req: Request, ctx: RequestContext) => Response | Promise<Response>;

/** Wraps the rest of the chain. */
export type Middleware = (
  req: Request,
  ctx: RequestContext,
  next: () => Promise<Response>,
) => Promise<Response>;

/** One entry of the route table. */
export interface Route {
  method: "GET" | "POST" | "PUT" | "DELETE";
  /** Literal segments and `:name` parameters, e.g. `/v1/rooms/:id`. */
  path: string;
  handler: Handler;
  /** Overrides the app's body limit (blob uploads). */
  maxBodyBytes?: number;
  /** Served without authentication; only `/healthz` is. */
  public?: boolean;
}

/** Options for {@linkcode createApp}. */
export interface AppOptions {
  routes: Route[];
  middleware?: Middleware[];
  log: Logger;
  /** Default body limit; 1 MiB when unset. */
  maxBodyBytes?: number;
}

/**
 * A JSON response.
 *
 * @example
 * ```ts
 * return json(200, { status: "ok" });
 * ```
 */
export function json(status: number, body: unknown, headers: HeadersInit = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

function errorResponse(err: HttpError): Response {
  return json(err.status, { ...err.details, error: err.code, message: err.message }, err.headers);
}

/**
 * The body length the client declared, or null without a `Content-Length`
 * (a chunked body). Throws {@linkcode HttpError} 400 on a malformed header.
 *
 * @example
 * ```ts
 * declaredLength(req); // 1024, or null for a chunked upload
 * ```
 */
export function declaredLength(req: Request): number | null {
  const text = req.headers.get("content-length");
  if (text === null) return null;
  if (!/^\d{1,15}$/.test(text)) {
    throw new HttpError(400, "bad_content_length", "Content-Length is not a byte count");
  }
  return Number(text);
}

/**
 * Reads the body as bytes, streamed under `ctx.maxBodyBytes`: 413 as soon as
 * the count crosses it, whether or not the client declared a length, and
 * without reading the rest. With `ctx.bodyDeadline` set, a body still
 * arriving at that instant (ms since the epoch) is 408 `body_timeout`; with
 * `ctx.minBodyRate` set, a body that falls behind that rate after its grace
 * is 408 `body_too_slow`. Either way a slow sender cannot hold a place for a
 * large upload for long, nor cheaply.
 *
 * @example
 * ```ts
 * const bytes = await readBody(req, ctx);
 * ```
 */
export async function readBody(req: Request, ctx: RequestContext): Promise<Uint8Array> {
  if (ctx.body) return ctx.body;
  if (!req.body) return (ctx.body = new Uint8Array(0));
  const limit = ctx.maxBodyBytes;
  const declared = declaredLength(req);
  if (declared !== null && declared > limit) throw tooLarge(limit);
  const reader = req.body.getReader();
  // With a declared length the bytes go straight into one buffer of that
  // size; only a chunked body is gathered in pieces and copied once.
  const exact = declared === null ? null : new Uint8Array(declared);
  const chunks: Uint8Array[] = [];
  let size = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const { bodyDeadline: deadline, minBodyRate: rate } = ctx;
  const started = Date.now();
  const cut = deadline === undefined && rate === undefined
    ? null
    : new Promise<HttpError>((resolve) => {
      const check = () => {
        const now = Date.now();
        if (deadline !== undefined && now >= deadline) {
          return resolve(
            new HttpError(408, "body_timeout", "the request body did not arrive in time"),
          );
        }
        // The grace is free (connection set-up, TCP slow start); after it
        // the body must keep up: bytes in >= rate × time since the grace.
        const owed = rate ? rate.bytesPerSecond * (now - started - rate.graceMs) / 1000 : 0;
        if (size < owed) {
          return resolve(
            new HttpError(
              408,
              "body_too_slow",
              `the request body arrived slower than ${rate!.bytesPerSecond} bytes/s`,
            ),
          );
        }
        const next = rate ? BODY_CHECK_MS : Infinity;
        timer = setTimeout(check, Math.max(0, Math.min(next, (deadline ?? Infinity) - now)));
      };
      check();
    });
  try {
    while (true) {
      const next = cut ? await Promise.race([reader.read(), cut]) : await reader.read();
      if (next instanceof HttpError) throw next;
      if (next.done) break;
      const chunk = next.value;
      if (size + chunk.byteLength > limit) throw tooLarge(limit);
      if (exact) {
        if (size + chunk.byteLength > exact.byteLength) {
          throw new HttpError(400, "bad_content_length", "the body is longer than Content-Length");
        }
        exact.set(chunk, size);
      } else chunks.push(chunk);
      size += chunk.byteLength;
    }
  } catch (err) {
    // Stop the transfer: nothing more of a refused body is read.
    reader.cancel().catch(() => {});
    if (err instanceof HttpError) throw err;
    // The stream itself failed: the sender hung up mid-body or broke the
    // chunked framing. That is the client's doing, so a 400, never a 500
    // with an error-level log line anyone could fill the log with.
    throw new HttpError(400, "bad_body", "the request body could not be read to its end");
  } finally {
    clearTimeout(timer);
  }
  if (exact) {
    if (size !== exact.byteLength) {
      throw new HttpError(400, "bad_content_length", "the body is shorter than Content-Length");
    }
    return (ctx.body = exact);
  }
  const out = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return (ctx.body = out);
}

// Invalid UTF-8 is refused, not replaced (one decoder: each decode is whole).
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads and parses a JSON body: 413 beyond the limit, 400 when it is not JSON.
 *
 * @example
 * ```ts
 * const body = await readJson(req, ctx) as { handle?: string };
 * ```
 */
export async function readJson(req: Request, ctx: RequestContext): Promise<unknown> {
  const bytes = await readBody(req, ctx);
  try {
    return JSON.parse(strictUtf8.decode(bytes));
  } catch {
    throw new HttpError(400, "bad_json", "the request body is not valid JSON");
  }
}

function tooLarge(limit: number): HttpError {
  return new HttpError(413, "too_large", `the request body exceeds ${limit} bytes`);
}

interface CompiledRoute extends Route {
  segments: string[];
}

function match(segments: string[], parts: string[]): Record<string, string> | null {
  if (segments.length !== parts.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i];
    if (seg.startsWith(":")) {
      if (!parts[i]) return null;
      try {
        params[seg.slice(1)] = decodeURIComponent(parts[i]);
      } catch {
        return null;
      }
    } else if (seg !== parts[i]) return null;
  }
  return params;
}

/**
 * Builds the request handler for `Deno.serve` from a route table.
 *
 * @example
 * ```ts
 * const handler = createApp({
 *   log,
 *   routes: [{ method: "GET", path: "/healthz", handler: () => json(200, { status: "ok" }) }],
 * });
 * Deno.serve({ port: 8470 }, handler);
 * ```
 */
export function createApp(
  opts: AppOptions,
): (req: Request, info?: Deno.ServeHandlerInfo) => Promise<Response> {
  const routes: CompiledRoute[] = opts.routes.map((r) => ({
    ...r,
    segments: r.path.split("/").slice(1),
  }));
  const defaultLimit = opts.maxBodyBytes ?? 1024 * 1024;
  const middleware = opts.middleware ?? [];

  return async (req: Request, info?: Deno.ServeHandlerInfo): Promise<Response> => {
    const url = new URL(req.url);
    const parts = url.pathname.split("/").slice(1);
    let route: CompiledRoute | undefined;
    let params: Record<string, string> = {};
    let pathMatched = false;
    for (const r of routes) {
      const p = match(r.segments, parts);
      if (!p) continue;
      pathMatched = true;
      if (r.method === req.method || (req.method === "HEAD" && r.method === "GET")) {
        route = r;
        params = p;
        break;
      }
    }
    const ctx: RequestContext = {
      params,
      log: opts.log,
      maxBodyBytes: route?.maxBodyBytes ?? defaultLimit,
      // Unmatched paths count as public so that they get a 404, not a 401.
      isPublic: route === undefined || route.public === true,
      route: route?.path ?? null,
      url,
      remoteAddr: info?.remoteAddr && "hostname" in info.remoteAddr
        ? info.remoteAddr.hostname
        : undefined,
    };
    const final = (): Promise<Response> => {
      if (!route) {
        return Promise.resolve(errorResponse(
          pathMatched
            ? new HttpError(405, "method_not_allowed", `${req.method} is not allowed here`)
            : new HttpError(404, "not_found", `no route for ${url.pathname}`),
        ));
      }
      return Promise.resolve(route.handler(req, ctx));
    };
    const chain = middleware.reduceRight<() => Promise<Response>>(
      (next, mw) => () => mw(req, ctx, next),
      final,
    );
    try {
      // The declared length is judged before any middleware, so an
      // oversized upload is refused before a byte of it is read, and before
      // the store is asked anything about its sender.
      const declared = route ? declaredLength(req) : null;
      if (declared !== null && declared > ctx.maxBodyBytes) throw tooLarge(ctx.maxBodyBytes);
      return await chain();
    } catch (err) {
      if (err instanceof HttpError) return errorResponse(err);
      opts.log.error("request failed", {
        method: req.method,
        path: url.pathname,
        error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
      });
      return json(500, { error: "internal", message: "internal error" });
    }
  };
}

/**
 * Middleware that logs one line per request with its status and duration.
 *
 * @example
 * ```ts
 * createApp({ log, routes, middleware: [accessLog] });
 * ```
 */
export const accessLog: Middleware = async (req, ctx, next) => {
  const started = performance.now();
  const line = (status: number, error?: string) =>
    ctx.log.info("http", {
      method: req.method,
      path: ctx.url.pathname,
      status,
      error,
      ms: Math.round((performance.now() - started) * 100) / 100,
    });
  try {
    const res = await next();
    line(res.status);
    return res;
  } catch (err) {
    // A refusal (503 included) is an answer too: without its line, an
    // operator reading the log after a failed write saw nothing at all.
    if (err instanceof HttpError) line(err.status, err.code);
    // A quota reached is a security event: a runaway user, or one being denied service.
    if (err instanceof HttpError && err.code === "quota_exceeded") {
      ctx.log.audit("quota.refused", "quota refused", {
        key: req.headers.get("x-unibus-key"),
        method: req.method,
        path: ctx.url.pathname,
        message: err.message,
      });
    }
    throw err;
  }
};
