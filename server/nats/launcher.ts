/**
 * The one way a nats-server child is started on a data dir, for `serve` and
 * for the temporary server of `migrate-to-kv --data-dir`: which binary runs,
 * a child that a killed serve left behind is reaped first, the configuration
 * is written private (it may carry the route secret), the child is started
 * and supervised, and its pid file goes when it stops. Both callers thereby
 * open the very JetStream store, in the same account layout, the same way.
 *
 * @module
 */

import type { Logger } from "../../lib/log.ts";
import { dialHost } from "../../lib/net/address.ts";
import { type ResolvedBinary, resolveNatsServerBin } from "./binary.ts";
import { type NatsConfigInput, renderNatsConfig } from "./config.ts";
import type { DataDirLayout } from "./data_dir.ts";
import { ManagedNatsServer } from "./managed_server.ts";
import { reapStaleNatsServer } from "./pid_file.ts";

/** What one start writes into the config; the paths come from the data dir's layout. */
export type NatsLaunchConfig = Omit<NatsConfigInput, "jetStreamDir" | "pidFile">;

/** A started nats-server child. */
export interface LaunchedNats {
  /** The supervised child (pid, restarts). */
  server: ManagedNatsServer;
  /** Where clients dial it: `nats://` or `tls://`, host and port. */
  url: string;
  /** Stops the child and removes its pid file. */
  stop(): Promise<void>;
}

/** A data dir made ready for a nats-server child: the binary found, any stale child reaped. */
export interface NatsLauncher {
  /** The binary that runs, for the start-up log. */
  readonly binary: ResolvedBinary;
  /**
   * Writes the configuration and starts the child; resolves once it serves.
   * Throws `NatsStartError` (managed_server.ts) when it does not come up.
   */
  start(config: NatsLaunchConfig, child: { quiet: boolean; log: Logger }): Promise<LaunchedNats>;
}

async function writePrivateFile(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(path, text, { mode: 0o600 });
  // `mode` only applies when the file is created; tighten one that existed.
  await Deno.chmod(path, 0o600);
}

/**
 * Resolves the nats-server binary (`binFlag`, else UNIBUS_NATS_SERVER, the
 * artifact's copy, `.tools/`, PATH) and reaps a child left running on
 * `layout` by an earlier serve, so that the ports and the store are free.
 * The caller holds the data dir's lock.
 *
 * @example
 * ```ts
 * const launcher = await prepareNatsLaunch({ layout: dataDirLayout("/var/lib/unibus"), log });
 * const nats = await launcher.start(config, { quiet: true, log });
 * try { … dial nats.url … } finally { await nats.stop(); }
 * ```
 */
export async function prepareNatsLaunch(
  opts: { layout: DataDirLayout; binFlag?: string | null; log: Logger },
): Promise<NatsLauncher> {
  const { layout } = opts;
  const binary = await resolveNatsServerBin({
    flag: opts.binFlag ?? undefined,
    env: Deno.env.toObject(),
  });
  await reapStaleNatsServer(layout.natsPidFile, layout.natsConfig, opts.log);
  return {
    binary,
    async start(config, child) {
      await writePrivateFile(
        layout.natsConfig,
        renderNatsConfig({
          ...config,
          jetStreamDir: layout.jetStreamDir,
          pidFile: layout.natsPidFile,
        }),
      );
      const server = new ManagedNatsServer({
        binary: binary.path,
        configPath: layout.natsConfig,
        host: config.host,
        port: config.port,
        quiet: child.quiet,
        log: child.log,
      });
      await server.start();
      return {
        server,
        url: `${config.tls ? "tls" : "nats"}://${dialHost(config.host)}:${config.port}`,
        async stop() {
          await server.stop();
          await Deno.remove(layout.natsPidFile).catch(() => {});
        },
      };
    },
  };
}
