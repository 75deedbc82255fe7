/**
 * What `--jetstream-sync always` costs against nats-server's 2-minute
 * default, on `--store kv`, one node and a three-node cluster (R3), both
 * settings in one run, alternated:
 * persisted-room packets stored per second (each acknowledged by its
 * stream), a KV write (a user added to the allowlist, as `unibus user add
 * --store kv` does) and a login through the auth callout.
 *
 * Run alone: `deno run -A scripts/bench/sync.ts [--sync-packets=2000]
 * [--sync-writes=200] [--sync-repeat=3]`.
 *
 * @module
 */

import { connect as natsConnect } from "@nats-io/transport-node";
import { inboxPrefixFor } from "../../lib/auth/acl.ts";
import {
  busUserAuthenticator,
  NativeNkeyPair,
  nkeyAuthenticatorFor,
  Prefix,
} from "../../lib/auth/nkey.ts";
import { connect } from "../../lib/client/client.ts";
import { generateIdentity, type Identity, loadIdentity } from "../../lib/identity/identity.ts";
import { startBus, stopBus } from "../../tests/helpers/rooms_api.ts";
import { startServeCluster } from "../../tests/helpers/cluster.ts";
import { waitUntil } from "../../tests/helpers/nats_cluster.ts";
import { openKvStore } from "../../lib/store/kv.ts";
import type { Store } from "../../lib/store/store.ts";
import { spread, summarize, type Summary } from "./stats.ts";
import { addBenchUsers } from "./users.ts";

/** One setting's figures in one repeat. */
export interface SyncRun {
  sync: string;
  /** "one node" or "three nodes" (R3). */
  topology: Topology;
  packetsPerSec: number;
  kvWriteMs: Summary;
  connectMs: Summary;
}

/** Sizes; every loop is bounded by them. */
export interface SyncBenchOptions {
  packets: number;
  writes: number;
  repeat: number;
}

type Topology = "one node" | "three nodes";

/** Where a run writes: a store of the control plane, a NATS and an HTTP URL of one node. */
interface SyncTarget {
  store: Store;
  natsUrl: string;
  httpUrl: string;
  stop(): Promise<void>;
}

async function startTarget(topology: Topology, sync: string): Promise<SyncTarget> {
  if (topology === "one node") {
    const bus = await startBus(["--jetstream-sync", sync], "kv");
    return {
      store: bus.store,
      natsUrl: `nats://127.0.0.1:${bus.s.natsPort}`,
      httpUrl: bus.s.httpUrl,
      stop: () => stopBus(bus),
    };
  }
  const c = await startServeCluster({ extraArgs: () => ["--jetstream-sync", sync] });
  try {
    // Every control-plane stream with a leader and current followers: until
    // then a login may meet a bucket being placed, and is refused.
    await waitUntil("three nodes healthy with replicas current", 60_000, async () => {
      const hs = await Promise.all([0, 1, 2].map((i) => c.health(i).catch(() => null)));
      return hs.every((h) =>
        h?.status === 200 && (h.body.cluster as { replicasCurrent?: boolean }).replicasCurrent
      );
    });
    const id = await loadIdentity(c.nodes[0].internalIdFile);
    const nc = await natsConnect({
      servers: c.nodes[0].natsUrl,
      authenticator: nkeyAuthenticatorFor(new NativeNkeyPair(Prefix.User, id.signSeed)),
    });
    const store = await openKvStore({ nc, replicas: 3, ownsConnection: true });
    return {
      store,
      natsUrl: c.nodes[0].natsUrl,
      httpUrl: c.nodes[0].httpUrl,
      async stop() {
        await store.close().catch(() => {});
        await c.stop();
      },
    };
  } catch (err) {
    await c.stop();
    throw err;
  }
}

async function runOnce(topology: Topology, sync: string, o: SyncBenchOptions): Promise<SyncRun> {
  const bus = await startTarget(topology, sync);
  try {
    const [a] = [generateIdentity("sync-a")];
    await addBenchUsers(bus.store, [a], `sync-${sync}`);
    const url = bus.natsUrl;
    const ca = await connect({ natsServers: [url], ctrlUrls: [bus.httpUrl], identity: a });
    let packetsPerSec = 0;
    try {
      const room = await ca.createRoom("sync.bench", { encrypt: true, sign: true, persist: true });
      const payload = new Uint8Array(256);
      const t = performance.now();
      // One packet per message (each publish awaited), every one acknowledged.
      for (let i = 0; i < o.packets; i++) await ca.publish(room, payload);
      await ca.flush();
      packetsPerSec = Math.round(o.packets / ((performance.now() - t) / 1000));
    } finally {
      await ca.close();
    }
    const writes: number[] = [];
    const ids: Identity[] = [];
    for (let i = 0; i < o.writes; i++) {
      const id = generateIdentity(`w${i}`);
      const t = performance.now();
      await addBenchUsers(bus.store, [id], `sync-w${i}`);
      writes.push(performance.now() - t);
      if (i < 50) ids.push(id);
    }
    const connects: number[] = [];
    for (const id of ids) {
      const t = performance.now();
      const nc = await natsConnect({
        servers: url,
        authenticator: busUserAuthenticator(new NativeNkeyPair(Prefix.User, id.signSeed)),
        inboxPrefix: inboxPrefixFor(id.signPubHex),
        reconnect: false,
      });
      connects.push(performance.now() - t);
      await nc.close();
    }
    return {
      sync,
      topology,
      packetsPerSec,
      kvWriteMs: summarize(writes),
      connectMs: summarize(connects),
    };
  } finally {
    await bus.stop();
  }
}

/**
 * Runs both settings `repeat` times, alternated.
 *
 * @example
 * ```ts
 * const runs = await benchSync({ packets: 2000, writes: 200, repeat: 3 });
 * ```
 */
export async function benchSync(o: SyncBenchOptions): Promise<SyncRun[]> {
  const runs: SyncRun[] = [];
  for (let r = 0; r < o.repeat; r++) {
    for (const topology of ["one node", "three nodes"] as const) {
      for (const sync of ["always", "2m"]) runs.push(await runOnce(topology, sync, o));
    }
  }
  return runs;
}

/**
 * The markdown table of {@linkcode benchSync}'s runs: min / median / max per setting.
 *
 * @example
 * ```ts
 * console.log(syncTable(await benchSync({ packets: 2000, writes: 200, repeat: 3 })));
 * ```
 */
export function syncTable(runs: SyncRun[]): string {
  const rows = (["one node", "three nodes"] as const).flatMap((topology) =>
    ["always", "2m"].map((sync) => {
      const of = runs.filter((r) => r.sync === sync && r.topology === topology);
      return `| ${topology} | ${sync} | ${spread(of.map((r) => r.packetsPerSec))} | ${
        spread(of.map((r) => r.kvWriteMs.p50), 2)
      } | ${spread(of.map((r) => r.kvWriteMs.p99), 2)} | ${
        spread(of.map((r) => r.connectMs.p50), 2)
      } |`;
    })
  );
  return [
    "`--jetstream-sync` on `--store kv`, one node and three (R3) (min / median / max over the repeats):",
    "",
    "| nodes | sync | persisted packets/s (each acked) | KV write p50 ms | KV write p99 ms | connect p50 ms |",
    "|---|---|---|---|---|---|",
    ...rows,
  ].join("\n");
}

if (import.meta.main) {
  const flag = (name: string, fallback: string) =>
    Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? fallback;
  console.log(syncTable(
    await benchSync({
      packets: Number(flag("sync-packets", "2000")),
      writes: Number(flag("sync-writes", "200")),
      repeat: Number(flag("sync-repeat", "3")),
    }),
  ));
}
