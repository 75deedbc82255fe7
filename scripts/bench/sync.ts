/**
 * What `--jetstream-sync always` costs against nats-server's 2-minute
 * default, one node on `--store kv`, both settings in one run, alternated:
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
import { busUserAuthenticator, NativeNkeyPair, Prefix } from "../../lib/auth/nkey.ts";
import { connect } from "../../lib/client/client.ts";
import { generateIdentity, type Identity } from "../../lib/identity/identity.ts";
import { startBus, stopBus } from "../../tests/helpers/rooms_api.ts";
import { spread, summarize, type Summary } from "./stats.ts";
import { addBenchUsers } from "./users.ts";

/** One setting's figures in one repeat. */
export interface SyncRun {
  sync: string;
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

async function runOnce(sync: string, o: SyncBenchOptions): Promise<SyncRun> {
  const bus = await startBus(["--jetstream-sync", sync], "kv");
  try {
    const [a] = [generateIdentity("sync-a")];
    await addBenchUsers(bus.store, [a], `sync-${sync}`);
    const url = `nats://127.0.0.1:${bus.s.natsPort}`;
    const ca = await connect({ natsServers: [url], ctrlUrls: [bus.s.httpUrl], identity: a });
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
    return { sync, packetsPerSec, kvWriteMs: summarize(writes), connectMs: summarize(connects) };
  } finally {
    await stopBus(bus);
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
    for (const sync of ["always", "2m"]) runs.push(await runOnce(sync, o));
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
  const rows = ["always", "2m"].map((sync) => {
    const of = runs.filter((r) => r.sync === sync);
    return `| ${sync} | ${spread(of.map((r) => r.packetsPerSec))} | ${
      spread(of.map((r) => r.kvWriteMs.p50), 2)
    } | ${spread(of.map((r) => r.kvWriteMs.p99), 2)} | ${
      spread(of.map((r) => r.connectMs.p50), 2)
    } |`;
  });
  return [
    "`--jetstream-sync`, one node on `--store kv` (min / median / max over the repeats):",
    "",
    "| sync | persisted packets/s (each acked) | KV write p50 ms | KV write p99 ms | connect p50 ms |",
    "|---|---|---|---|---|",
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
