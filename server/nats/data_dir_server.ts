/**
 * A temporary nats-server on a stopped node's data dir, for offline work on
 * its JetStream store (`unibus migrate-to-kv --data-dir`, `unibus backup|restore --data-dir
 * --with-history`): the runbook's
 * order is "stop serve, migrate, start serve --store kv", and the buckets
 * must land in the very JetStream store (and account) that serve opens next.
 *
 * It holds the data dir's lock (so serve cannot start on it meanwhile, and it
 * refuses a data dir a serve is running on), listens on loopback only, and
 * admits two identities, keys made for this run: one in the control plane's
 * account, one in the rooms' account. Anyone else who dials it
 * waits on an auth callout nobody answers and is refused (fail closed).
 *
 * @module
 */

import { NativeNkeyPair, Prefix } from "../../lib/auth/nkey.ts";
import type { Logger } from "../../lib/log.ts";
import { jetStreamStoreFromDisk } from "../limits.ts";
import { dataDirLayout } from "./data_dir.ts";
import { prepareNatsLaunch } from "./launcher.ts";
import { NatsStartError } from "./managed_server.ts";
import { claimDataDir, releaseDataDir } from "./pid_file.ts";

/** A running temporary nats-server. */
export interface DataDirServer {
  /** `nats://127.0.0.1:<port>`. */
  url: string;
  /** The identity it admits in the control plane's account (the buckets). */
  user: NativeNkeyPair;
  /** The identity it admits in the rooms' account (persisted rooms' streams). */
  roomsUser: NativeNkeyPair;
  /** Stops it and gives the data dir back. */
  stop(): Promise<void>;
}

function freeLoopbackPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Starts nats-server on `dataDir`'s JetStream store, on a free loopback port.
 * Throws if the dir does not exist or a serve runs on it.
 *
 * @example
 * ```ts
 * const nats = await startDataDirServer("/var/lib/unibus", log);
 * try { … connect to nats.url as nats.user … } finally { await nats.stop(); }
 * ```
 */
export async function startDataDirServer(dataDir: string, log: Logger): Promise<DataDirServer> {
  const l = dataDirLayout(dataDir); // the very paths serve uses
  const st = await Deno.stat(l.dir).catch(() => null);
  if (!st?.isDirectory) throw new Error(`no data dir at ${l.dir}`);
  await claimDataDir(l.lockFile);
  try {
    const launcher = await prepareNatsLaunch({ layout: l, log });
    const { maxStore } = await jetStreamStoreFromDisk(l.dir, l.jetStreamDir);
    const user = NativeNkeyPair.generate(Prefix.User);
    const roomsUser = NativeNkeyPair.generate(Prefix.User);
    // A port found free can be taken before nats-server binds it: retry.
    for (let attempt = 1;; attempt++) {
      const port = freeLoopbackPort();
      try {
        const nats = await launcher.start({
          serverName: "unibus-data-dir",
          host: "127.0.0.1",
          port,
          maxFileStore: maxStore,
          // The copy it makes is acknowledged only once on disk, like serve's writes.
          syncInterval: "always",
          debug: false,
          trace: false,
          monitorPort: null,
          // The enforce layout, so the buckets land in serve's account; the
          // issuer and system keys die with this run, so no callout answer
          // can ever be signed for it.
          auth: {
            mode: "enforce",
            calloutIssuer: NativeNkeyPair.generate(Prefix.Account).getPublicKey(),
            internalUser: user.getPublicKey(),
            roomsUser: roomsUser.getPublicKey(),
            systemUser: NativeNkeyPair.generate(Prefix.User).getPublicKey(),
          },
          tls: null,
        }, { quiet: true, log });
        return {
          url: nats.url,
          user,
          roomsUser,
          async stop() {
            await nats.stop();
            await releaseDataDir(l.lockFile);
          },
        };
      } catch (err) {
        if (err instanceof NatsStartError && /in use/i.test(err.message) && attempt < 3) continue;
        throw err;
      }
    }
  } catch (err) {
    await releaseDataDir(l.lockFile);
    throw err;
  }
}
