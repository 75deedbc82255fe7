/**
 * serve's data-plane stage: the managed nats-server (or the external NATS a
 * development setup names) and serve's connections to it, one per account
 * it acts in: the control plane's (store, callout, gossip), the rooms'
 * (room streams) and the users' (the server's notices to users).
 *
 * @module
 */

import { type NativeNkeyPair, nkeyAuthenticatorFor } from "../../lib/auth/nkey.ts";
import type { Logger } from "../../lib/log.ts";
import { connectInternal, type InternalConnection } from "../../lib/nats/internal_connection.ts";
import type { ServeIdentities } from "../auth/identities.ts";
import { DEFAULT_LAME_DUCK } from "../cluster/options.ts";
import { clusterRouteConfig } from "../cluster/routes.ts";
import type { Lifecycle } from "../lifecycle.ts";
import { jetStreamStoreFromDisk } from "../limits.ts";
import type { ServeOptions } from "../options.ts";
import type { NatsClusterConfig } from "./config.ts";
import type { DataDirLayout } from "./data_dir.ts";
import { prepareNatsLaunch } from "./launcher.ts";
import { natsLogOptions, natsMonitorPort } from "./log_options.ts";
import type { ManagedNatsServer } from "./managed_server.ts";

/** The data plane serve runs on. */
export interface DataPlane {
  /** The managed child, or null on an external NATS. */
  nats: ManagedNatsServer | null;
  /** Where serve dials it. */
  natsUrl: string;
  /** The control plane's account: the store (on KV), the callout, cluster gossip. */
  conn: InternalConnection;
  /** The rooms' account: room streams. The same connection as `conn` on an external NATS. */
  roomsConn: InternalConnection;
  /** The users' account: the server's notices. The same connection as `conn` on an external NATS. */
  usersConn: InternalConnection;
}

/**
 * Starts the managed nats-server (unless `opts.natsUrl` names an external
 * one) and opens serve's connections; each is recorded in `life`.
 *
 * @example
 * ```ts
 * const plane = await startDataPlane(opts, ids, dataDirLayout(opts.dataDir), life, log);
 * plane.conn.state(); // { connected: true, … }
 * ```
 */
export async function startDataPlane(
  opts: ServeOptions,
  ids: ServeIdentities,
  layout: DataDirLayout,
  life: Lifecycle,
  log: Logger,
): Promise<DataPlane> {
  if (opts.tls) {
    for (const f of [opts.tls.certFile, opts.tls.keyFile, opts.tls.caFile]) {
      await Deno.stat(f).catch(() => {
        throw new Error(`cannot read TLS file ${f}`);
      });
    }
  }
  const cluster = opts.cluster
    ? await clusterRouteConfig(opts.cluster, opts.tls?.caFile ?? null, log)
    : null;
  let nats: ManagedNatsServer | null = null;
  let natsUrl = opts.natsUrl;
  if (natsUrl === null) {
    const launched = await startManagedNats(opts, ids, layout, cluster, log);
    life.started("nats-server", () => launched.stop());
    nats = launched.server;
    natsUrl = launched.url;
  }

  const conn = await connectInternal({
    servers: [natsUrl],
    name: `unibus-serve-${opts.serverName}`,
    authenticator: ids.internalUser ? nkeyAuthenticatorFor(ids.internalUser) : undefined,
    caFile: opts.tls?.caFile,
    // On KV the store's bucket bootstrap is the JetStream check, with the
    // retry a cold cluster needs; a one-shot check here would defeat it.
    jetstream: opts.store !== "kv",
    log: log.child("nats"),
  });
  life.started("control-plane connection", () => conn.close());
  // An external NATS (development only) is one account: one connection
  // plays all three parts there.
  const connectAccount = async (user: NativeNkeyPair | null, part: string) => {
    if (!user) return conn;
    const c = await connectInternal({
      servers: [natsUrl],
      name: `unibus-serve-${opts.serverName}-${part}`,
      authenticator: nkeyAuthenticatorFor(user),
      caFile: opts.tls?.caFile,
      jetstream: false,
      log: log.child(`nats-${part}`),
    });
    life.started(`${part} connection`, () => c.close());
    return c;
  };
  const roomsConn = await connectAccount(ids.roomsUser, "rooms");
  const usersConn = await connectAccount(ids.usersUser, "users");
  return { nats, natsUrl, conn, roomsConn, usersConn };
}

/** Writes the managed nats-server's configuration and starts it. */
async function startManagedNats(
  opts: ServeOptions,
  ids: ServeIdentities,
  layout: DataDirLayout,
  cluster: NatsClusterConfig | null,
  log: Logger,
) {
  const launcher = await prepareNatsLaunch({ layout, binFlag: opts.natsServerBin, log });
  const logOpts = natsLogOptions(
    Deno.env.get("UNIBUS_NATS_DEBUG"),
    Deno.env.get("UNIBUS_NATS_MONITOR"),
  );
  const maxFileStore = await jetStreamMaxStore(opts, layout, log);
  log.info("starting nats-server", {
    binary: launcher.binary.path,
    source: launcher.binary.source,
    monitor: logOpts.monitor,
    debug: logOpts.debug,
  });
  return await launcher.start({
    serverName: opts.serverName,
    host: opts.natsHost,
    port: opts.natsPort,
    maxFileStore,
    maxSubscriptions: opts.limits.subscriptionsPerConnection,
    syncInterval: opts.jetstreamSync ?? "always",
    debug: logOpts.debug,
    trace: logOpts.trace,
    monitorPort: logOpts.monitor
      ? opts.natsMonitorPort ?? natsMonitorPort(Deno.env.get("UNIBUS_NATS_MONITOR_PORT"))
      : null,
    auth: ids.natsAuth,
    tls: opts.tls ? { certFile: opts.tls.certFile, keyFile: opts.tls.keyFile } : null,
    cluster,
    // Only a clustered node ever asks for a lame duck (serve.ts), so only its
    // config sets one.
    lameDuck: opts.cluster ? opts.cluster.lameDuck ?? DEFAULT_LAME_DUCK : null,
  }, { quiet: logOpts.quiet, log: log.child("nats-server") });
}

/**
 * JetStream's max store for the managed nats-server: the flag, else sized
 * from the data disk; logged with how many persisted rooms it holds.
 */
async function jetStreamMaxStore(
  opts: ServeOptions,
  layout: DataDirLayout,
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
