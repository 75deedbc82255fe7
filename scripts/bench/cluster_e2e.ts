/**
 * E2E throughput and round trip on a three-node serve cluster (KV store,
 * route TLS, tests/helpers/cluster.ts) next to one node on the KV store, in
 * the same run: publisher and requester on node 1, subscriber and replier on
 * node 2, so every message crosses a route. Run by `--only=cluster-e2e`.
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
    await admin.close();
    const [near, far] = nodes;
    const tput: Throughput[] = [];
    for (const size of sizes) {
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
    return { tput, lat };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * One node (KV store) then three nodes, each measured with the same workers.
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
    single = await measure([node, node], 1, count, pings, sizes);
  } finally {
    await s.stop();
    await Deno.remove(idDir, { recursive: true }).catch(() => {});
  }
  const c = await startServeCluster();
  try {
    await Promise.all([0, 1, 2].map((i) => c.healthy(i, 60_000)));
    const [a, b] = c.nodes;
    const cluster = await measure([a, b], 3, count, pings, sizes);
    return { single, cluster };
  } finally {
    await c.stop();
  }
}
