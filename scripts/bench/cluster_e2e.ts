/**
 * E2E throughput and round trip on a three-node serve cluster (KV store,
 * route TLS, tests/helpers/cluster.ts) next to one node on the KV store, in
 * the same run: publisher and requester on node 1, subscriber and replier on
 * node 2, so every message crosses a route. On the cluster, raw nats.js
 * (logged in as a stock client, docs/clients.md, on a plain room's subject)
 * is measured beside E2E, each size back to back, between the same two
 * nodes. Run by `--only=cluster-e2e`.
 *
 * @module
 */

import { connect as natsConnect } from "@nats-io/transport-node";
import { NativeNkeyPair, nkeyAuthenticatorFor, Prefix } from "../../lib/auth/nkey.ts";
import { connect } from "../../lib/client/client.ts";
import { generateIdentity, loadIdentity, saveIdentity } from "../../lib/identity/identity.ts";
import { openStore } from "../../lib/store/mod.ts";
import { startServeCluster } from "../../tests/helpers/cluster.ts";
import { startServe } from "../../tests/helpers/serve_process.ts";
import { countFor, latency, type Throughput, throughput } from "./e2e.ts";
import type { Summary } from "./stats.ts";
import { addBenchUsers } from "./users.ts";

/** One topology's figures. */
export interface TopologyResult {
  tput: Throughput[];
  lat: Summary;
  /** Raw nats.js between the same nodes (measured on the cluster only). */
  raw?: { tput: Throughput[]; lat: Summary };
}

interface Node {
  natsUrl: string;
  httpUrl: string;
  internalIdFile: string;
}

async function measure(
  nodes: [Node, Node],
  replicas: 1 | 3,
  count: number,
  pings: number,
  sizes: number[],
  withRaw: boolean,
): Promise<TopologyResult> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-bench-cluster-" });
  try {
    const ids = [generateIdentity("bench-a"), generateIdentity("bench-b")];
    // Users go in through the KV as another node would (`user add --store kv`).
    const internal = await loadIdentity(nodes[0].internalIdFile);
    const nc = await natsConnect({
      servers: nodes[0].natsUrl,
      authenticator: nkeyAuthenticatorFor(new NativeNkeyPair(Prefix.User, internal.signSeed)),
    });
    const store = await openStore({ kind: "kv", nc, replicas, ownsConnection: true });
    try {
      await addBenchUsers(store, ids, "bench");
    } finally {
      await store.close();
    }
    const files = [`${dir}/a.json`, `${dir}/b.json`];
    for (const [i, id] of ids.entries()) await saveIdentity(files[i], id);
    const admin = await connect({
      natsServers: [nodes[0].natsUrl],
      ctrlUrls: [nodes[0].httpUrl],
      identity: ids[0],
    });
    const room = await admin.createRoom("bench.e2e", undefined, { members: [ids[1].signPubHex] });
    const pingRoom = await admin.createRoom("bench.ping", undefined, {
      members: [ids[1].signPubHex],
    });
    // Plain rooms (neither encrypted nor signed): the callout lets their
    // members use the subject with any NATS client, so raw nats.js crosses
    // the same enforce-mode nodes and routes as E2E does.
    const plain = { encrypt: false, sign: false, persist: false };
    const rawRoom = withRaw
      ? await admin.createRoom("bench.raw", plain, { members: [ids[1].signPubHex] })
      : undefined;
    const rawPing = withRaw
      ? await admin.createRoom("bench.rawping", plain, { members: [ids[1].signPubHex] })
      : undefined;
    await admin.close();
    const [near, far] = nodes;
    const tput: Throughput[] = [];
    const rawTput: Throughput[] = [];
    for (const size of sizes) {
      // Raw then E2E of one size back to back: the machine's load is the
      // most alike for the two figures that are divided.
      if (rawRoom) {
        rawTput.push(
          await throughput("raw", {
            url: far.natsUrl,
            identity: files[1],
            pubUrl: near.natsUrl,
            pubIdentity: files[0],
            subject: rawRoom.subject,
            count: countFor(count, size),
            size,
            settleMs: 500,
          }),
        );
      }
      tput.push(
        await throughput("e2e", {
          url: far.natsUrl,
          ctrl: far.httpUrl,
          identity: files[1],
          pubUrl: near.natsUrl,
          pubCtrl: near.httpUrl,
          pubIdentity: files[0],
          room: room.id,
          count: countFor(count, size),
          size,
          settleMs: 500,
        }),
      );
    }
    const lat = await latency(
      "e2e",
      { url: far.natsUrl, ctrl: far.httpUrl, identity: files[1], room: pingRoom.id },
      {
        url: near.natsUrl,
        ctrl: near.httpUrl,
        identity: files[0],
        room: pingRoom.id,
        count: pings,
        size: 256,
      },
    );
    if (!rawPing) return { tput, lat };
    const rawLat = await latency(
      "raw",
      { url: far.natsUrl, identity: files[1], subject: rawPing.subject },
      {
        url: near.natsUrl,
        identity: files[0],
        subject: rawPing.subject,
        count: pings,
        size: 256,
      },
    );
    return { tput, lat, raw: { tput: rawTput, lat: rawLat } };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * One node (KV store) then three nodes, each measured with the same workers;
 * raw nats.js on the three nodes too.
 *
 * @example
 * ```ts
 * const r = await benchClusterE2E(50_000, 1000, [256, 16384]);
 * ```
 */
export async function benchClusterE2E(
  count: number,
  pings: number,
  sizes: number[],
): Promise<{ single: TopologyResult; cluster: TopologyResult }> {
  const idDir = await Deno.makeTempDir({ prefix: "unibus-bench-single-" });
  const idFile = `${idDir}/internal.id`;
  const s = await startServe({
    extraArgs: ["--bus-auth", "enforce", "--store", "kv", "--internal-id-file", idFile],
  });
  let single: TopologyResult;
  try {
    const node = {
      natsUrl: `nats://127.0.0.1:${s.natsPort}`,
      httpUrl: s.httpUrl,
      internalIdFile: idFile,
    };
    single = await measure([node, node], 1, count, pings, sizes, false);
  } finally {
    await s.stop();
    await Deno.remove(idDir, { recursive: true }).catch(() => {});
  }
  const c = await startServeCluster();
  try {
    await Promise.all([0, 1, 2].map((i) => c.healthy(i, 60_000)));
    const [a, b] = c.nodes;
    const cluster = await measure([a, b], 3, count, pings, sizes, true);
    return { single, cluster };
  } finally {
    await c.stop();
  }
}
