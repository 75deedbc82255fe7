/**
 * The control plane's HTTP listener. It may open before the app is ready: a
 * clustered node listens before its control-plane buckets open, which waits
 * for a JetStream quorum, and until then answers every request with a 503
 * (healthz says "starting"). An operator or a load balancer thereby sees a
 * node waiting for its peers rather than a refused connection; a lone node
 * waits, it never serves alone.
 *
 * @module
 */

import { dialHost } from "../../lib/net/address.ts";
import { VERSION } from "../../lib/version.ts";
import { json } from "./app.ts";
import type { Posture } from "./health.ts";

type ServeHandler = (req: Request, info?: Deno.ServeHandlerInfo) => Response | Promise<Response>;

/** Where and how the listener binds. */
export interface ListenerOptions {
  host: string;
  port: number;
  /** HTTPS with this certificate and key; null for plain HTTP. */
  tls: { certFile: string; keyFile: string } | null;
  /** Reported by the "starting" healthz. */
  posture: Posture;
}

/**
 * One `Deno.serve` listener whose handler is swapped in once the app exists.
 *
 * @example
 * ```ts
 * const http = new ControlPlaneListener({ host: "127.0.0.1", port: 8470, tls: null, posture });
 * await http.listen();          // 503 "starting" until:
 * http.serve(createApp({ … }));
 * await http.close();
 * ```
 */
export class ControlPlaneListener {
  #opts: ListenerOptions;
  #stopped = new AbortController();
  #server: Deno.HttpServer<Deno.NetAddr> | null = null;
  #handler: ServeHandler;

  constructor(opts: ListenerOptions) {
    this.#opts = opts;
    this.#handler = (req) => starting(req, opts.posture);
  }

  /** Whether the listener is open. */
  get listening(): boolean {
    return this.#server !== null;
  }

  /** The address to dial it at (`host:port`); throws before {@linkcode listen}. */
  get addr(): string {
    if (!this.#server) throw new Error("the HTTP listener is not open");
    return `${dialHost(this.#server.addr.hostname)}:${this.#server.addr.port}`;
  }

  /** Opens the listener; the one-line error names the address. */
  async listen(): Promise<void> {
    const { host, port, tls } = this.#opts;
    try {
      const tlsFiles = tls
        ? { cert: await Deno.readTextFile(tls.certFile), key: await Deno.readTextFile(tls.keyFile) }
        : {};
      this.#server = Deno.serve({
        hostname: host,
        port,
        signal: this.#stopped.signal,
        onListen: () => {},
        ...tlsFiles,
      }, (req, info) => this.#handler(req, info)); // the peer's address feeds per-source limits
    } catch (err) {
      throw new Error(`cannot listen on ${host}:${port}: ${(err as Error).message}`);
    }
  }

  /** Serves `handler` from now on, in place of the "starting" answers. */
  serve(handler: ServeHandler): void {
    this.#handler = handler;
  }

  /** Stops accepting and waits for the requests in flight; safe to call twice. */
  async close(): Promise<void> {
    this.#stopped.abort();
    await this.#server?.finished;
  }
}

function starting(req: Request, posture: Posture): Response {
  return new URL(req.url).pathname === "/healthz"
    ? json(503, {
      status: "starting",
      version: VERSION,
      phase: "opening the control-plane buckets (waiting for a JetStream quorum)",
      posture,
    }, { "cache-control": "no-store" })
    : json(503, { error: "starting", message: "the node is starting; try again shortly" });
}
