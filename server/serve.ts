/**
 * `unibus serve`: opens the store, starts (or joins) the data plane, keeps the
 * internal NATS connection, serves the control plane, and shuts all of it down
 * cleanly on SIGINT/SIGTERM.
 *
 * @module
 */

import type { ServeOptions } from "../cli/serve.ts";
import type { Logger } from "../lib/log.ts";
import { connectInternal, type InternalConnection } from "../lib/nats/internal_connection.ts";
import { openSqliteStore } from "../lib/store/sqlite.ts";
import type { Store } from "../lib/store/store.ts";
import { VERSION } from "../lib/version.ts";
import { accessLog, createApp } from "./http/app.ts";
import { healthRoute, type Posture } from "./http/health.ts";
import { resolveNatsServerBin } from "./nats/binary.ts";
import { renderNatsConfig } from "./nats/config.ts";
import { NATS_MONITOR_PORT, natsLogOptions } from "./nats/log_options.ts";
import { ManagedNatsServer } from "./nats/managed_server.ts";
import { claimDataDir, reapStaleNatsServer, releaseDataDir } from "./nats/pid_file.ts";

/** Paths of everything `serve` keeps in the data dir. */
export function dataDirLayout(dataDir: string) {
  const dir = dataDir.replace(/\/+$/, "") || "/";
  return {
    dir,
    lockFile: `${dir}/serve.pid`,
    natsConfig: `${dir}/nats-server.conf`,
    natsPidFile: `${dir}/nats-server.pid`,
    jetStreamDir: `${dir}/jetstream`,
  };
}

function connectHost(host: string): string {
  if (host === "0.0.0.0") return "127.0.0.1";
  if (host === "::") return "::1";
  return host.includes(":") ? `[${host}]` : host;
}

async function writePrivateFile(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(path, text, { mode: 0o600 });
  // `mode` only applies when the file is created; tighten one that existed.
  await Deno.chmod(path, 0o600);
}

/**
 * Runs `serve` until SIGINT or SIGTERM; resolves with the exit status.
 *
 * @example
 * ```ts
 * const code = await runServe(parseServeArgs(Deno.args.slice(1)), log);
 * Deno.exit(code);
 * ```
 */
export async function runServe(opts: ServeOptions, log: Logger): Promise<number> {
  const startedAt = performance.now();
  const layout = dataDirLayout(opts.dataDir);
  await Deno.mkdir(layout.dir, { recursive: true, mode: 0o700 });
  await claimDataDir(layout.lockFile);

  // Listen before anything starts: a SIGTERM that arrives during start-up is
  // honoured as soon as start-up ends, instead of killing serve mid-way with
  // a child left running.
  const signalled = Promise.withResolvers<string>();
  const onSignal = (sig: Deno.Signal) => () => signalled.resolve(sig);
  const listeners = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const fn = onSignal(sig);
    Deno.addSignalListener(sig, fn);
    return [sig, fn] as const;
  });
  const cleanups: Array<() => Promise<void>> = [
    () => releaseDataDir(layout.lockFile),
    () => {
      for (const [s, fn] of listeners) Deno.removeSignalListener(s, fn);
      return Promise.resolve();
    },
  ];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) {
      await fn().catch((err) => log.error("shutdown step failed", { error: err }));
    }
  };

  let conn: InternalConnection;
  let store: Store;
  let nats: ManagedNatsServer | null = null;
  try {
    store = await openSqliteStore(opts.dbPath);
    cleanups.push(() => store.close());

    let natsUrl = opts.natsUrl;
    if (natsUrl === null) {
      const bin = await resolveNatsServerBin({
        flag: opts.natsServerBin ?? undefined,
        env: Deno.env.toObject(),
      });
      const logOpts = natsLogOptions(
        Deno.env.get("UNIBUS_NATS_DEBUG"),
        Deno.env.get("UNIBUS_NATS_MONITOR"),
      );
      await reapStaleNatsServer(layout.natsPidFile, layout.natsConfig, log);
      await writePrivateFile(
        layout.natsConfig,
        renderNatsConfig({
          serverName: opts.serverName,
          host: opts.natsHost,
          port: opts.natsPort,
          jetStreamDir: layout.jetStreamDir,
          pidFile: layout.natsPidFile,
          debug: logOpts.debug,
          trace: logOpts.trace,
          monitorPort: logOpts.monitor ? NATS_MONITOR_PORT : null,
        }),
      );
      nats = new ManagedNatsServer({
        binary: bin.path,
        configPath: layout.natsConfig,
        host: opts.natsHost,
        port: opts.natsPort,
        quiet: logOpts.quiet,
        log: log.child("nats-server"),
      });
      log.info("starting nats-server", {
        binary: bin.path,
        source: bin.source,
        monitor: logOpts.monitor,
        debug: logOpts.debug,
      });
      await nats.start();
      const managed = nats;
      cleanups.push(async () => {
        await managed.stop();
        await Deno.remove(layout.natsPidFile).catch(() => {});
      });
      natsUrl = `nats://${connectHost(opts.natsHost)}:${opts.natsPort}`;
    }

    conn = await connectInternal({
      servers: [natsUrl],
      name: `unibus-serve-${opts.serverName}`,
      log: log.child("nats"),
    });
    cleanups.push(() => conn.close());
  } catch (err) {
    await cleanup();
    throw err;
  }

  const posture: Posture = {
    auth: opts.busAuth,
    acl: false,
    tls: false,
    store: opts.store,
    replicas: 1,
  };
  const handler = createApp({
    log: log.child("http"),
    maxBodyBytes: opts.maxBodyBytes,
    middleware: [accessLog],
    routes: [healthRoute({ posture, dataPlane: () => conn.state() })],
  });

  const stopped = new AbortController();
  let httpServer: Deno.HttpServer<Deno.NetAddr>;
  try {
    httpServer = Deno.serve({
      hostname: opts.httpHost,
      port: opts.httpPort,
      signal: stopped.signal,
      onListen: () => {},
    }, handler);
  } catch (err) {
    await cleanup();
    throw new Error(
      `cannot listen on ${opts.httpHost}:${opts.httpPort}: ${(err as Error).message}`,
    );
  }
  const httpAddr = `${connectHost(httpServer.addr.hostname)}:${httpServer.addr.port}`;

  log.info("unibus ready", {
    version: VERSION,
    httpAddr,
    natsUrl: conn.nc.getServer(),
    managedNats: nats !== null,
    natsPid: nats?.pid ?? null,
    posture,
    readyMs: Math.round(performance.now() - startedAt),
  });

  const sig = await signalled.promise;
  log.info("shutting down", { signal: sig });
  stopped.abort();
  await httpServer.finished;
  await cleanup();
  log.info("stopped");
  return 0;
}
