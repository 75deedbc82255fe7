/**
 * `GET /metrics`: Prometheus text exposition, written by prom-client (the
 * maintained Node client; it runs unchanged under Deno). Public like
 * `/healthz` and on the same listener: it carries counts and latencies, never
 * keys, subjects, handles or room ids (labels are route patterns and fixed
 * words only, so a caller cannot grow the series).
 *
 * @module
 */

import client from "prom-client";
import type { Store } from "../lib/store/store.ts";
import type { ClusterStatus } from "./cluster/status.ts";
import { HttpError, type Middleware, type Route } from "./http/app.ts";

/** The instruments serve updates, and the registry that renders them. */
export interface Metrics {
  registry: client.Registry;
  calloutAnswered(ms: number, allowed: boolean): void;
  kicked(reason: string): void;
  /** Middleware timing every request by route pattern and status. */
  http: Middleware;
  /** Wraps a store so that every operation's latency is observed. */
  instrumentStore<S extends Store>(store: S): S;
  /** The `/metrics` route. */
  route: Route;
}

/** Live values read at scrape time. */
export interface MetricsSources {
  connections(): number;
  natsRestarts(): number;
  cluster(): ClusterStatus | null;
}

/**
 * Creates the registry and its instruments.
 *
 * @example
 * ```ts
 * const metrics = createMetrics({ connections: () => sessions.size, natsRestarts: () => 0, cluster: () => null });
 * createApp({ log, routes: [metrics.route], middleware: [metrics.http] });
 * ```
 */
export function createMetrics(src: MetricsSources): Metrics {
  const registry = new client.Registry();
  const registers = [registry];
  new client.Gauge({
    name: "unibus_connections",
    help: "Authenticated data-plane connections this node enforces",
    registers,
    collect() {
      this.set(src.connections());
    },
  });
  const callouts = new client.Counter({
    name: "unibus_callout_total",
    help: "Auth callout answers by result",
    labelNames: ["result"] as const,
    registers,
  });
  const calloutSeconds = new client.Histogram({
    name: "unibus_callout_seconds",
    help: "Auth callout answer latency",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers,
  });
  const kicks = new client.Counter({
    name: "unibus_kicks_total",
    help: "Data-plane connections cut by the enforcer, by reason",
    labelNames: ["reason"] as const,
    registers,
  });
  const requests = new client.Counter({
    name: "unibus_http_requests_total",
    help: "Control-plane requests by route pattern and status",
    labelNames: ["route", "status"] as const,
    registers,
  });
  const requestSeconds = new client.Histogram({
    name: "unibus_http_request_seconds",
    help: "Control-plane request latency by route pattern",
    labelNames: ["route"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers,
  });
  const storeSeconds = new client.Histogram({
    name: "unibus_store_op_seconds",
    help: "Store operation latency by operation",
    labelNames: ["op", "result"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2],
    registers,
  });
  new client.Gauge({
    name: "unibus_nats_server_restarts",
    help: "Times the managed nats-server was restarted after dying",
    registers,
    collect() {
      this.set(src.natsRestarts());
    },
  });
  new client.Gauge({
    name: "unibus_cluster_peers",
    help: "Cluster peers by route state",
    labelNames: ["state"] as const,
    registers,
    collect() {
      const peers = src.cluster()?.peers ?? [];
      this.set({ state: "up" }, peers.filter((p) => p.route === "up").length);
      this.set({ state: "down" }, peers.filter((p) => p.route === "down").length);
    },
  });
  new client.Gauge({
    name: "unibus_cluster_quorum",
    help: "1 while the JetStream meta group has a leader (single node: always 1)",
    registers,
    collect() {
      const c = src.cluster();
      this.set(c === null || c.quorum ? 1 : 0);
    },
  });

  return {
    registry,
    calloutAnswered(ms, allowed) {
      callouts.inc({ result: allowed ? "allowed" : "denied" });
      calloutSeconds.observe(ms / 1000);
    },
    kicked(reason) {
      kicks.inc({ reason });
    },
    http: async (_req, ctx, next) => {
      const started = performance.now();
      const route = ctx.route ?? "unmatched";
      const record = (status: number) => {
        requests.inc({ route, status: String(status) });
        requestSeconds.observe({ route }, (performance.now() - started) / 1000);
      };
      try {
        const res = await next();
        record(res.status);
        return res;
      } catch (err) {
        // Refusals travel as HttpError to the app, which answers with its status.
        record(err instanceof HttpError ? err.status : 500);
        throw err;
      }
    },
    instrumentStore<S extends Store>(store: S): S {
      return new Proxy(store, {
        // Methods run on the store itself (its private fields are not the proxy's).
        get(target, prop) {
          const v = Reflect.get(target, prop, target);
          if (typeof v !== "function") return v;
          if (typeof prop !== "string" || prop === "close") return v.bind(target);
          return (...args: unknown[]) => {
            const started = performance.now();
            const done = (result: string) =>
              storeSeconds.observe({ op: prop, result }, (performance.now() - started) / 1000);
            const out = v.apply(target, args);
            if (out instanceof Promise) {
              return out.then((x) => (done("ok"), x), (err) => {
                done("error");
                throw err;
              });
            }
            done("ok");
            return out;
          };
        },
      });
    },
    route: {
      method: "GET",
      path: "/metrics",
      public: true,
      handler: async () =>
        new Response(await registry.metrics(), {
          headers: { "content-type": registry.contentType, "cache-control": "no-store" },
        }),
    },
  };
}
