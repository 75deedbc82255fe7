/**
 * Where a node keeps its state: one layout read by `serve` and by the
 * offline tools that open a stopped node's data dir (`migrate-to-kv
 * --data-dir`), so that both find the very same lock, config, pid file and
 * JetStream store.
 *
 * @module
 */

/** Paths of everything `serve` keeps in the data dir. */
export interface DataDirLayout {
  /** The data dir itself, without a trailing slash. */
  dir: string;
  /** serve's pid: who owns the data dir (server/nats/pid_file.ts). */
  lockFile: string;
  /** The generated nats-server configuration (0600: it may hold the route secret). */
  natsConfig: string;
  /** The nats-server child's pid, to reap a child a crashed serve left running. */
  natsPidFile: string;
  /** JetStream's file store: room streams, and on `--store kv` the control plane. */
  jetStreamDir: string;
}

/**
 * The layout of `dataDir`.
 *
 * @example
 * ```ts
 * dataDirLayout("/var/lib/unibus/").natsConfig; // "/var/lib/unibus/nats-server.conf"
 * ```
 */
export function dataDirLayout(dataDir: string): DataDirLayout {
  const dir = dataDir.replace(/\/+$/, "") || "/";
  return {
    dir,
    lockFile: `${dir}/serve.pid`,
    natsConfig: `${dir}/nats-server.conf`,
    natsPidFile: `${dir}/nats-server.pid`,
    jetStreamDir: `${dir}/jetstream`,
  };
}
