/**
 * `unibus serve`: a composition of stages, each in the module that owns it,
 * run in this order: keys and identities (auth/identities.ts) → data plane
 * (nats/data_plane.ts: the managed nats-server and serve's connections) →
 * store (control_plane_store.ts) → enforcement (auth/enforcement.ts) → HTTP
 * (http/listener.ts, http/control_plane_app.ts). Each stage records how to
 * stop what it started in one {@linkcode Lifecycle}; a stage that fails, or
 * SIGINT/SIGTERM, stops everything started so far, newest first. A
 * clustered node first puts its nats-server in lame duck, so that its
 * clients move to the other nodes before it goes.
 *
 * @module
 */

import type { Logger } from "../lib/log.ts";
import { VERSION } from "../lib/version.ts";
import { startEnforcement } from "./auth/enforcement.ts";
import { loadServeIdentities } from "./auth/identities.ts";
import { watchMetaGroup } from "./cluster/meta_watchdog.ts";
import { DEFAULT_LAME_DUCK } from "./cluster/options.ts";
import { clusterSize } from "./cluster/routes.ts";
import type { ClusterMonitor } from "./cluster/status.ts";
import { openControlPlaneStore } from "./control_plane_store.ts";
import { controlPlaneApp } from "./http/control_plane_app.ts";
import { ControlPlaneListener } from "./http/listener.ts";
import { startNoncePruner } from "./http/request_auth.ts";
import { Lifecycle, listenForStopSignals } from "./lifecycle.ts";
import { createMetrics } from "./metrics.ts";
import { dataDirLayout } from "./nats/data_dir.ts";
import { type DataPlane, startDataPlane } from "./nats/data_plane.ts";
import type { ManagedNatsServer } from "./nats/managed_server.ts";
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
    if (opts.cluster && plane.nats && ids.systemUser) {
      await watchMetaGroup({
        natsUrl: plane.natsUrl,
        systemUser: ids.systemUser,
        caFile: opts.tls?.caFile ?? null,
        node: opts.serverName,
        clusterSize: clusterSize(opts.cluster),
        nats: plane.nats,
        log: log.child("cluster"),
      }, life);
    }
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
  // A clustered node's clients have other nodes to go to: nats-server's lame
  // duck moves them there before this node stops, while HTTP and the store
  // keep answering (a client told to move may still be finishing a request
  // here). A single node has nowhere to send them: its clients wait for it
  // whatever it does, and a lame duck would only hold every restart for its
  // grace and nats-server's 30 s minimum, so it stops at once.
  if (opts.cluster && plane.nats) {
    await lameDuck(plane.nats, opts.cluster.lameDuck ?? DEFAULT_LAME_DUCK, log);
  }
  // Requests in flight finish before the store and connections they use close.
  await http.close();
  await life.stopAll();
  log.info("stopped");
  return 0;
}

// Past the duration, what nats-server may still be doing before it exits:
// a second to hand RAFT leaderships away, JetStream's shutdown, the last
// client's close.
const LAME_DUCK_MARGIN_S = 15;

/**
 * The managed nats-server's lame duck, logged at both ends; a second SIGINT
 * or SIGTERM cuts it short (an operator who insists means it), and so does
 * its bound, so a stop never hangs on it.
 */
async function lameDuck(
  nats: ManagedNatsServer,
  ld: { durationS: number; graceS: number },
  log: Logger,
): Promise<void> {
  const again = listenForStopSignals();
  const startedAt = performance.now();
  log.info("lame duck started", { durationS: ld.durationS, graceS: ld.graceS });
  try {
    const how = await nats.lameDuck((ld.durationS + LAME_DUCK_MARGIN_S) * 1000, again.received);
    const ms = Math.round(performance.now() - startedAt);
    if (how === "drained") log.info("lame duck done", { ms });
    else log.warn("lame duck ended early", { how, ms });
  } finally {
    again.remove();
  }
}

/** Opens the HTTP listener and records its closing. */
async function listen(http: ControlPlaneListener, life: Lifecycle): Promise<void> {
  await http.listen();
  life.started("HTTP listener", () => http.close());
}
