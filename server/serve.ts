/**
 * `unibus serve`: a composition of stages, each in the module that owns it,
 * run in this order: keys and identities (auth/identities.ts) → data plane
 * (nats/data_plane.ts: the managed nats-server and serve's connections) →
 * store (control_plane_store.ts) → enforcement (auth/enforcement.ts) → HTTP
 * (http/listener.ts, http/control_plane_app.ts). Each stage records how to
 * stop what it started in one {@linkcode Lifecycle}; a stage that fails, or
 * SIGINT/SIGTERM, stops everything started so far, newest first.
 *
 * @module
 */

import type { Logger } from "../lib/log.ts";
import { VERSION } from "../lib/version.ts";
import { startEnforcement } from "./auth/enforcement.ts";
import { loadServeIdentities } from "./auth/identities.ts";
import type { ClusterMonitor } from "./cluster/status.ts";
import { openControlPlaneStore } from "./control_plane_store.ts";
import { controlPlaneApp } from "./http/control_plane_app.ts";
import { ControlPlaneListener } from "./http/listener.ts";
import { startNoncePruner } from "./http/request_auth.ts";
import { Lifecycle, listenForStopSignals } from "./lifecycle.ts";
import { createMetrics } from "./metrics.ts";
import { dataDirLayout } from "./nats/data_dir.ts";
import { type DataPlane, startDataPlane } from "./nats/data_plane.ts";
import { claimDataDir, releaseDataDir } from "./nats/pid_file.ts";
import { checkServeOptions, servePosture, type UncheckedServeOptions } from "./options.ts";
import { startRoomStreamKeeper } from "./rooms/stream_keeper.ts";
import { startRoomStreamMover } from "./rooms/stream_move.ts";

/**
 * Runs `serve` until SIGINT or SIGTERM; resolves with the exit status.
 * `options` go through `checkServeOptions` first: whoever calls this (the
 * CLI, a test, an embedding) meets the same posture refusals, as a
 * `ServeOptionsError`, before anything is written or started.
 *
 * @example
 * ```ts
 * const code = await runServe(parseServeArgs(Deno.args.slice(1)), log);
 * Deno.exit(code);
 * ```
 */
export async function runServe(options: UncheckedServeOptions, log: Logger): Promise<number> {
  const opts = checkServeOptions(options);
  const startedAt = performance.now();
  const layout = dataDirLayout(opts.dataDir);
  await Deno.mkdir(layout.dir, { recursive: true, mode: 0o700 });
  await claimDataDir(layout.lockFile);
  const life = new Lifecycle(log);
  life.started("data dir lock", () => releaseDataDir(layout.lockFile));
  const signals = listenForStopSignals();
  life.started("signal listeners", () => signals.remove());

  const posture = servePosture(opts);
  // Filled in as the stages start; /metrics reads them at scrape time.
  const live = {
    plane: null as DataPlane | null,
    monitor: null as ClusterMonitor | null,
    sessions: () => 0,
  };
  const metrics = createMetrics({
    connections: () => live.sessions(),
    natsRestarts: () => live.plane?.nats?.restarts ?? 0,
    cluster: () => live.monitor?.status() ?? null,
  });
  const http = new ControlPlaneListener({
    host: opts.httpHost,
    port: opts.httpPort,
    tls: opts.tls,
    posture,
  });
  let plane: DataPlane;
  try {
    const ids = await loadServeIdentities(opts, log);
    plane = live.plane = await startDataPlane(opts, ids, layout, life, log);
    // A clustered node listens before its buckets open (they wait for a
    // quorum), answering 503 "starting" meanwhile (http/listener.ts).
    if (opts.cluster) await listen(http, life);
    const store = await openControlPlaneStore(
      opts,
      {
        conn: plane.conn,
        metrics,
        stopSignal: signals.received,
        majorityAlive: () => live.monitor?.majorityAlive() ?? false,
      },
      life,
      log,
    );
    const enforcement = opts.busAuth === "enforce"
      ? await startEnforcement(opts, { ids, ...plane, store, metrics, posture }, life, log)
      : null;
    if (enforcement) {
      live.monitor = enforcement.clusterMonitor;
      live.sessions = () => enforcement.sessions.size;
    }
    // Room streams still in the control plane's account (a data dir from
    // before the rooms' account) move to the rooms' account in the background.
    if (plane.roomsConn !== plane.conn) {
      const mover = startRoomStreamMover({
        ctrl: plane.conn.nc,
        rooms: plane.roomsConn.nc,
        maxBytes: opts.limits.roomStreamMaxBytes,
        replicas: posture.replicas,
        log: log.child("upgrade"),
      });
      life.started("room stream mover", () => mover.stop());
    }
    // A persisted room restored or copied into the store gets its stream.
    const keeper = startRoomStreamKeeper({
      store,
      nc: plane.roomsConn.nc,
      maxBytes: opts.limits.roomStreamMaxBytes,
      replicas: posture.replicas,
      log: log.child("streams"),
    });
    life.started("room stream keeper", () => keeper.stop());
    const stopPruner = startNoncePruner(store, log.child("nonces"));
    life.started("nonce pruner", stopPruner);
    http.serve(controlPlaneApp(opts, {
      store,
      metrics,
      posture,
      ...plane,
      clusterMonitor: live.monitor,
      recheck: enforcement?.recheck ?? (() => {}),
      log,
    }));
    if (!http.listening) await listen(http, life);
  } catch (err) {
    await life.stopAll();
    throw err;
  }

  log.info("unibus ready", {
    version: VERSION,
    httpAddr: http.addr,
    httpScheme: opts.tls ? "https" : "http",
    natsUrl: plane.conn.nc.getServer(),
    managedNats: plane.nats !== null,
    natsPid: plane.nats?.pid ?? null,
    posture,
    readyMs: Math.round(performance.now() - startedAt),
  });

  const sig = await signals.received;
  log.info("shutting down", { signal: sig });
  // Requests in flight finish before the store and connections they use close.
  await http.close();
  await life.stopAll();
  log.info("stopped");
  return 0;
}

/** Opens the HTTP listener and records its closing. */
async function listen(http: ControlPlaneListener, life: Lifecycle): Promise<void> {
  await http.listen();
  life.started("HTTP listener", () => http.close());
}
