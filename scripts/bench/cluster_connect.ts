/**
 * What a login costs on a three-node cluster (`--store kv --kv-replicas 3`):
 * an authenticated connect through the auth callout, for a user of no rooms
 * and for a member of ten, whose admission reads the user, the member index
 * and each room's records, every one confirmed against its bucket's RAFT log
 * (lib/store/kv.ts, `#startCurrent`).
 *
 * With a baseline checkout (`--baseline=<dir>`: another revision of this
 * repository), a cluster of its own joins and the logins alternate between
 * the two, so that before and after are measured in the same run.
 *
 * @module
 */

import { connect } from "@nats-io/transport-node";
import { inboxPrefixFor } from "../../lib/auth/acl.ts";
import { busUserAuthenticator, NativeNkeyPair, Prefix } from "../../lib/auth/nkey.ts";
import { connect as unibusConnect } from "../../lib/client/client.ts";
import { generateIdentity, type Identity } from "../../lib/identity/identity.ts";
import type * as ClusterHelpers from "../../tests/helpers/cluster.ts";
import { summarize, type Summary } from "./stats.ts";

/** Rooms the member of many belongs to. */
const ROOMS = 10;

interface Target {
  name: string;
  login(who: Identity): Promise<number>;
  stop(): Promise<void>;
}

/** A cluster started by `tree`'s own test helpers, with `users` allowlisted and in their rooms. */
async function clusterTarget(
  name: string,
  tree: string,
  users: { none: Identity; many: Identity; admin: Identity },
): Promise<Target> {
  const helpers: typeof ClusterHelpers = await import(`${tree}/tests/helpers/cluster.ts`);
  const c = await helpers.startServeCluster();
  try {
    for (const i of [0, 1, 2]) await c.healthy(i, 60_000);
    await helpers.addKvUser(c, 0, users.admin, "admin");
    await helpers.addKvUser(c, 0, users.none);
    await helpers.addKvUser(c, 0, users.many);
    const admin = await unibusConnect({
      natsServers: [c.nodes[0].natsUrl],
      ctrlUrls: [c.nodes[0].httpUrl],
      identity: users.admin,
    });
    try {
      for (let r = 0; r < ROOMS; r++) {
        await admin.createRoom(`bench.login.${r}`, undefined, {
          members: [users.many.signPubHex],
        });
      }
    } finally {
      await admin.close();
    }
    return {
      name,
      async login(who) {
        const t0 = performance.now();
        const nc = await connect({
          servers: c.nodes[1].natsUrl,
          authenticator: busUserAuthenticator(new NativeNkeyPair(Prefix.User, who.signSeed)),
          inboxPrefix: inboxPrefixFor(who.signPubHex),
        });
        const ms = performance.now() - t0;
        await nc.close();
        return ms;
      },
      stop: () => c.stop(),
    };
  } catch (err) {
    await c.stop();
    throw err;
  }
}

/** What {@linkcode benchClusterConnect} measured, ms per login, by target and user. */
export type ClusterConnectResult = Record<string, { none: Summary; many: Summary }>;

/**
 * `n` rounds of one login of each user on each cluster (node 2, so that
 * some buckets' leaders are elsewhere), after 20 warm-up rounds.
 *
 * @example
 * ```ts
 * const r = await benchClusterConnect(200, { baseline: "/tmp/unibus-before" });
 * console.log(r.this.many.p50, r.baseline?.many.p50);
 * ```
 */
export async function benchClusterConnect(
  n: number,
  opts: { baseline?: string } = {},
): Promise<ClusterConnectResult> {
  const users = {
    none: generateIdentity("none"),
    many: generateIdentity("many"),
    admin: generateIdentity("admin"),
  };
  const here = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
  const targets: Target[] = [];
  try {
    targets.push(await clusterTarget("this", here, users));
    if (opts.baseline) targets.push(await clusterTarget("baseline", opts.baseline, users));
    const times = new Map(
      targets.map((t) => [t.name, { none: [] as number[], many: [] as number[] }]),
    );
    for (let round = 0; round < 20 + n; round++) {
      for (const t of round % 2 ? [...targets].reverse() : targets) {
        for (const who of ["none", "many"] as const) {
          const ms = await t.login(users[who]);
          if (round >= 20) times.get(t.name)![who].push(ms);
        }
      }
    }
    return Object.fromEntries(
      [...times].map(([k, v]) => [k, { none: summarize(v.none), many: summarize(v.many) }]),
    );
  } finally {
    for (const t of targets) await t.stop().catch(() => {});
  }
}
