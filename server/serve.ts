/**
 * `unibus serve`: opens the store, starts (or joins) the data plane, keeps the
 * internal NATS connection, serves the control plane, and shuts all of it down
 * cleanly on SIGINT/SIGTERM.
 *
 * @module
 */

import { NativeNkeyPair, nkeyAuthenticatorFor, Prefix } from "../lib/auth/nkey.ts";
import { generateSeed } from "../lib/crypto/ed25519.ts";
import { loadOrCreateIdentity } from "../lib/identity/identity.ts";
import type { Logger } from "../lib/log.ts";
import { connectInternal, type InternalConnection } from "../lib/nats/internal_connection.ts";
import { controlPlaneStreams } from "../lib/store/kv_buckets.ts";
import { openStore } from "../lib/store/mod.ts";
import type { Store } from "../lib/store/store.ts";
import { VERSION } from "../lib/version.ts";
import { createMetrics } from "./metrics.ts";
import { assertSeparateRouteCa } from "./cluster/route_tls.ts";
import { allRoutes } from "./cluster/options.ts";
import { loadOrCreateCalloutIssuer, resolveClusterPass } from "./cluster/secrets.ts";
import { grantPublisher, startSessionFeed } from "./cluster/session_feed.ts";
import { type ClusterMonitor, startClusterMonitor } from "./cluster/status.ts";
import type { ServeOptions } from "./options.ts";
import { startAuthCallout } from "./auth/callout.ts";
import { startEnforcer } from "./auth/enforcer.ts";
import { SessionRegistry } from "./auth/sessions.ts";
import { accessLog, createApp, json } from "./http/app.ts";
import { healthRoute, type Posture } from "./http/health.ts";
import { kvControlPlaneCheck, sqliteControlPlaneCheck } from "./http/control_plane_check.ts";
import { requireSignedRequests, startNoncePruner } from "./http/request_auth.ts";
import { apiRoutes } from "./http/routes/mod.ts";
import { jetStreamStoreFromDisk } from "./limits.ts";
import { resolveNatsServerBin } from "./nats/binary.ts";
import {
  type NatsAuthConfig,
  type NatsClusterConfig,
  redactRoute,
  renderNatsConfig,
} from "./nats/config.ts";
import { accountUser } from "./nats/account_users.ts";
import { natsLogOptions, natsMonitorPort } from "./nats/log_options.ts";
import { dataDirLayout } from "./nats/data_dir.ts";
import { ManagedNatsServer } from "./nats/managed_server.ts";
import { claimDataDir, reapStaleNatsServer, releaseDataDir } from "./nats/pid_file.ts";
import { reportInexpressibleRooms } from "./rooms/inexpressible.ts";
import { startRoomStreamMover } from "./rooms/stream_move.ts";

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
 * JetStream's max store for the managed nats-server: the flag, else sized
 * from the data disk; logged with how many persisted rooms it holds.
 */
async function jetStreamMaxStore(
  opts: ServeOptions,
  layout: ReturnType<typeof dataDirLayout>,
  log: Logger,
): Promise<number> {
  const roomBytes = opts.limits.roomStreamMaxBytes;
  const sized = opts.limits.jetStreamMaxStore === null
    ? await jetStreamStoreFromDisk(layout.dir, layout.jetStreamDir)
    : null;
  const maxStore = opts.limits.jetStreamMaxStore ?? sized!.maxStore;
  if (maxStore < roomBytes) {
    throw new Error(
      `JetStream would get ${maxStore} bytes, less than one persisted room ` +
        `(--room-stream-max-bytes ${roomBytes}): free disk space or set --jetstream-max-store`,
    );
  }
  log.info("JetStream store", {
    maxBytes: maxStore,
    from: sized ? "data disk" : "flag",
    ...(sized ? { diskFreeBytes: sized.freeBytes, jetStreamUsedBytes: sized.usedBytes } : {}),
    roomStreamMaxBytes: roomBytes,
    persistedRoomsThatFit: Math.floor(maxStore / roomBytes),
  });
  return maxStore;
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

  // The HTTP listener. A clustered node opens it before the control-plane
  // buckets, which wait for a quorum: until the app is ready every request
  // gets a 503 (healthz says "starting"), so an operator or load balancer
  // sees a node waiting for its peers rather than a refused connection
  // (seed 004: a lone node waits, it never serves alone).
  const stopped = new AbortController();
  let httpServer: Deno.HttpServer<Deno.NetAddr> | null = null;
  // The peer's address (info) goes through: per-source upload limits and
  // the access log key on it.
  let serveRequest: (
    req: Request,
    info?: Deno.ServeHandlerInfo,
  ) => Response | Promise<Response> = (req) =>
    new URL(req.url).pathname === "/healthz"
      ? json(503, {
        status: "starting",
        version: VERSION,
        phase: "opening the control-plane buckets (waiting for a JetStream quorum)",
        posture,
      }, { "cache-control": "no-store" })
      : json(503, { error: "starting", message: "the node is starting; try again shortly" });
  const listen = async (): Promise<Deno.HttpServer<Deno.NetAddr>> => {
    try {
      const tlsFiles = opts.tls
        ? {
          cert: await Deno.readTextFile(opts.tls.certFile),
          key: await Deno.readTextFile(opts.tls.keyFile),
        }
        : {};
      return Deno.serve({
        hostname: opts.httpHost,
        port: opts.httpPort,
        signal: stopped.signal,
        onListen: () => {},
        ...tlsFiles,
      }, (req, info) => serveRequest(req, info));
    } catch (err) {
      throw new Error(
        `cannot listen on ${opts.httpHost}:${opts.httpPort}: ${(err as Error).message}`,
      );
    }
  };

  // serve's connections: the control plane's account (store, callout,
  // gossip), the rooms' account (room streams) and the users' account (the
  // server's notices to users), each a separate identity.
  let conn: InternalConnection;
  let roomsConn: InternalConnection;
  let usersConn: InternalConnection;
  let store!: Store;
  let nats: ManagedNatsServer | null = null;
  // Set once the enforcer runs (enforce mode only); routes call it after membership changes.
  let recheck = (_roomId?: string) => {};
  let clusterMonitor: ClusterMonitor | null = null;
  let sessionCount = () => 0;
  const metrics = createMetrics({
    connections: () => sessionCount(),
    natsRestarts: () => nats?.restarts ?? 0,
    cluster: () => clusterMonitor?.status() ?? null,
  });
  const posture: Posture = {
    auth: opts.busAuth,
    acl: opts.busAuth === "enforce",
    tls: opts.tls !== null,
    store: opts.store,
    replicas: opts.store === "kv" ? opts.kvReplicas : 1,
  };
  try {
    if (opts.store === "sqlite") {
      store = metrics.instrumentStore(await openStore({ kind: "sqlite", path: opts.dbPath }));
      cleanups.push(() => store.close());
      await reportInexpressibleRooms(store, log.child("rooms"));
    }

    // Enforce mode keys. The callout issuer and the system user live as long
    // as this process; the internal identity can be persisted so that a CLI
    // on this node can present it (seed 004: --internal-id-file).
    const enforce = opts.busAuth === "enforce";
    // In a cluster any node may answer any node's callout request, and a
    // nats-server accepts only answers signed by the issuer in its own
    // config: so the nodes share one issuer, provisioned as a 0600 file.
    const issuer = !enforce
      ? null
      : opts.calloutIssuerFile
      ? await loadOrCreateCalloutIssuer(opts.calloutIssuerFile)
      : NativeNkeyPair.generate(Prefix.Account);
    const systemUser = enforce ? NativeNkeyPair.generate(Prefix.User) : null;
    // A nats-server of our own gets serve's identities in all three application
    // accounts (server/nats/config.ts), in development mode too: the control
    // plane and the streams are out of reach of the "local" user as well.
    const ownServer = opts.natsUrl === null;
    let internalUser: NativeNkeyPair | null = null;
    let roomsUser: NativeNkeyPair | null = null;
    let usersUser: NativeNkeyPair | null = null;
    if (enforce || ownServer) {
      const seed = opts.internalIdFile
        ? (await loadOrCreateIdentity(opts.internalIdFile)).signSeed
        : generateSeed();
      internalUser = new NativeNkeyPair(Prefix.User, seed);
      log.info("internal service identity", {
        nkey: internalUser.getPublicKey(),
        persisted: opts.internalIdFile ?? false,
      });
      if (ownServer) {
        roomsUser = accountUser(seed, "rooms");
        usersUser = accountUser(seed, "users");
      }
    }
    const internalUsers = {
      internalUser: internalUser?.getPublicKey(),
      roomsUser: roomsUser?.getPublicKey(),
      usersUser: usersUser?.getPublicKey(),
    };
    const auth: NatsAuthConfig = enforce
      ? {
        mode: "enforce",
        calloutIssuer: issuer!.getPublicKey(),
        systemUser: systemUser!.getPublicKey(),
        ...internalUsers,
        internalUser: internalUser!.getPublicKey(),
      }
      : { mode: "off", ...internalUsers };
    if (opts.tls) {
      for (const f of [opts.tls.certFile, opts.tls.keyFile, opts.tls.caFile]) {
        await Deno.stat(f).catch(() => {
          throw new Error(`cannot read TLS file ${f}`);
        });
      }
    }

    let cluster: NatsClusterConfig | null = null;
    if (opts.cluster) {
      const c = opts.cluster;
      if (c.routeTls && opts.tls) await assertSeparateRouteCa(c.routeTls.caFile, opts.tls.caFile);
      const { pass, warning } = await resolveClusterPass(c.pass);
      if (warning) log.warn(warning);
      cluster = {
        name: c.name,
        host: c.host,
        port: c.port,
        routes: allRoutes(c, localAddresses()),
        user: c.user,
        pass,
        tls: c.routeTls,
      };
      // Routes are logged without their userinfo, never with the secret.
      log.info("cluster", {
        name: c.name,
        listen: `${c.host}:${c.port}`,
        routes: c.routes.map(redactRoute),
        routeTls: c.routeTls !== null,
        secretFrom: c.pass.kind,
      });
    }

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
      const maxFileStore = await jetStreamMaxStore(opts, layout, log);
      await writePrivateFile(
        layout.natsConfig,
        renderNatsConfig({
          serverName: opts.serverName,
          host: opts.natsHost,
          port: opts.natsPort,
          jetStreamDir: layout.jetStreamDir,
          maxFileStore,
          syncInterval: opts.jetstreamSync ?? "always",
          pidFile: layout.natsPidFile,
          debug: logOpts.debug,
          trace: logOpts.trace,
          monitorPort: logOpts.monitor
            ? opts.natsMonitorPort ?? natsMonitorPort(Deno.env.get("UNIBUS_NATS_MONITOR_PORT"))
            : null,
          auth,
          tls: opts.tls ? { certFile: opts.tls.certFile, keyFile: opts.tls.keyFile } : null,
          cluster,
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
      natsUrl = `${opts.tls ? "tls" : "nats"}://${connectHost(opts.natsHost)}:${opts.natsPort}`;
    }

    conn = await connectInternal({
      servers: [natsUrl],
      name: `unibus-serve-${opts.serverName}`,
      authenticator: internalUser ? nkeyAuthenticatorFor(internalUser) : undefined,
      caFile: opts.tls?.caFile,
      // On KV the bucket bootstrap below is the JetStream check, with the
      // retry a cold cluster needs; a one-shot check here would defeat it.
      jetstream: opts.store !== "kv",
      log: log.child("nats"),
    });
    cleanups.push(() => conn.close());
    // An external NATS (development only) is one account: one connection
    // plays all three parts there.
    const connectAccount = async (user: NativeNkeyPair | null, part: string) => {
      if (!user) return conn;
      const c = await connectInternal({
        servers: [natsUrl!],
        name: `unibus-serve-${opts.serverName}-${part}`,
        authenticator: nkeyAuthenticatorFor(user),
        caFile: opts.tls?.caFile,
        jetstream: false,
        log: log.child(`nats-${part}`),
      });
      cleanups.push(() => c.close());
      return c;
    };
    roomsConn = await connectAccount(roomsUser, "rooms");
    usersConn = await connectAccount(usersUser, "users");

    if (opts.cluster) {
      const early = await listen();
      httpServer = early;
      cleanups.push(async () => {
        stopped.abort();
        await early.finished;
      });
    }

    if (opts.store === "kv") {
      // The internal connection owns the buckets: it is the only identity
      // with rights on `$KV.UNIBUS_*`, `$O.*` and their `$JS.API` subjects
      // (bus users' ACLs name only their rooms and inbox).
      const opening = openStore({
        kind: "kv",
        nc: conn.nc,
        replicas: opts.kvReplicas,
        bootstrapTimeoutMs: opts.kvBootstrapTimeoutMs,
        // A replica answers while a bucket's leader is being re-elected,
        // never on a node without a live majority (lib/store/kv.ts).
        replicaReads: () => clusterMonitor?.majorityAlive() ?? false,
        log: log.child("kv"),
      });
      // A node waiting for its peers (up to the bootstrap budget) still
      // stops at once when told to, instead of after the budget runs out.
      const interrupted = signalled.promise.then((sig) => {
        throw new Error(`stopped by ${sig} while opening the control-plane buckets`);
      });
      opening.catch(() => {});
      interrupted.catch(() => {});
      store = metrics.instrumentStore(await Promise.race([opening, interrupted]));
      cleanups.push(() => store.close());
      // A report, never a reason to stop: a node that just rejoined opens its
      // buckets before their streams have caught up, and a read may still
      // fail then ("JetStream system temporarily unavailable"); serve used
      // to exit on it.
      reportInexpressibleRooms(store, log.child("rooms")).catch((err) =>
        log.warn("stored rooms' subjects not checked at start", { error: err })
      );
    }

    if (enforce) {
      const sys = await connectInternal({
        servers: [natsUrl],
        name: `unibus-serve-${opts.serverName}-sys`,
        authenticator: nkeyAuthenticatorFor(systemUser!),
        caFile: opts.tls?.caFile,
        jetstream: false,
        log: log.child("nats-sys"),
      });
      cleanups.push(() => sys.close());
      if (opts.cluster) {
        const monitor = startClusterMonitor({
          clusterName: opts.cluster.name,
          node: opts.serverName,
          posture,
          sys: sys.nc,
          app: conn.nc,
          log: log.child("cluster"),
          streams: controlPlaneStreams(),
          clusterSize: allRoutes(opts.cluster, localAddresses()).length,
        });
        clusterMonitor = monitor;
        cleanups.push(() => monitor.stop());
      }
      const sessions = new SessionRegistry();
      sessionCount = () => sessions.size;
      const callout = startAuthCallout({
        nc: conn.nc,
        issuer: issuer!,
        store,
        sessions,
        log: log.child("auth"),
        // In a cluster this node may answer for another node's server: the
        // admission goes to the node that holds the connection.
        grant: opts.cluster ? grantPublisher(conn.nc) : undefined,
        onAnswer: (ms, allowed) => metrics.calloutAnswered(ms, allowed),
        quorum: quorumOf(clusterMonitor),
      });
      cleanups.push(() => callout.stop());
      if (opts.cluster) {
        const feed = startSessionFeed({
          sys: sys.nc,
          app: conn.nc,
          sessions,
          log: log.child("sessions"),
        });
        cleanups.push(() => feed.stop());
      }
      // The callout's subscription must reach the server before a client
      // connects, or the first clients time out instead of being answered.
      await conn.nc.flush();
      const enforcer = startEnforcer({
        sys: sys.nc,
        notices: usersConn.nc,
        store,
        sessions,
        log: log.child("enforcer"),
        onKick: (reason) => metrics.kicked(reason),
      });
      cleanups.push(() => enforcer.stop());
      recheck = (roomId) => enforcer.recheckNow(roomId);
    }
    if (roomsConn !== conn) {
      const mover = startRoomStreamMover({
        ctrl: conn.nc,
        rooms: roomsConn.nc,
        maxBytes: opts.limits.roomStreamMaxBytes,
        replicas: posture.replicas,
        log: log.child("upgrade"),
      });
      cleanups.push(() => mover.stop());
    }
    const stopPruner = startNoncePruner(store, log.child("nonces"));
    cleanups.push(() => Promise.resolve(stopPruner()));
  } catch (err) {
    await cleanup();
    throw err;
  }

  const handler = createApp({
    log: log.child("http"),
    maxBodyBytes: opts.maxBodyBytes,
    middleware: [
      accessLog,
      metrics.http,
      requireSignedRequests({
        store: store!,
        uploads: {
          perUser: opts.limits.uploadsPerUser,
          perSource: opts.limits.uploadsPerSource,
          total: opts.limits.uploadsTotal,
        },
      }),
    ],
    routes: [
      metrics.route,
      healthRoute({
        posture,
        dataPlane: () => conn.state(),
        controlPlane: opts.store === "kv"
          ? kvControlPlaneCheck(conn.nc, controlPlaneStreams())
          : sqliteControlPlaneCheck(store, opts.dbPath),
        cluster: clusterMonitor ? () => clusterMonitor!.status() : undefined,
      }),
      ...apiRoutes({
        store: store!,
        streamsNc: roomsConn!.nc,
        noticesNc: usersConn!.nc,
        recheck: (roomId) => recheck(roomId),
        log: log.child("api"),
        limits: opts.limits,
        streamReplicas: posture.replicas,
        // Replicated streams only: an R1 stream is placed on any live node.
        missingNodes: clusterMonitor && posture.replicas > 1
          ? () => clusterMonitor!.missingPeers()
          : undefined,
      }),
    ],
  });

  serveRequest = handler;
  if (!httpServer) {
    try {
      httpServer = await listen();
    } catch (err) {
      await cleanup();
      throw err;
    }
  }
  const httpAddr = `${connectHost(httpServer.addr.hostname)}:${httpServer.addr.port}`;

  log.info("unibus ready", {
    version: VERSION,
    httpAddr,
    httpScheme: opts.tls ? "https" : "http",
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

/** The callout's quorum question: a cluster monitor's `majorityAlive`, or none on a single node. */
function quorumOf(monitor: ClusterMonitor | null): (() => Promise<boolean>) | undefined {
  return monitor ? () => monitor.majorityAlive() : undefined;
}

/** This machine's own addresses (to tell this node's route among the listed ones). */
function localAddresses(): string[] {
  try {
    return Deno.networkInterfaces().map((i) => i.address);
  } catch {
    return [];
  }
}
