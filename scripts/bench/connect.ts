/**
 * Connect latency: an authenticated connect (nkey + auth callout, enforce
 * mode) against an unauthenticated one (auth off), each against its own real
 * `unibus serve`, in the same run.
 *
 * @module
 */

import { connect } from "@nats-io/transport-node";
import { inboxPrefixFor } from "../../lib/auth/acl.ts";
import { busUserAuthenticator, NativeNkeyPair, Prefix } from "../../lib/auth/nkey.ts";
import { generateIdentity } from "../../lib/identity/identity.ts";
import { startServe } from "../../tests/helpers/serve_process.ts";
import { openServeStore, storeArgs, type StoreKind } from "../../tests/helpers/serve_store.ts";
import { summarize, type Summary } from "./stats.ts";
import { addBenchUsers } from "./users.ts";

async function timeConnects(
  n: number,
  open: () => Promise<{ close(): Promise<void> }>,
): Promise<number[]> {
  // Warm-up: JIT, TCP and the first JWT minted are not what a client sees later.
  for (let i = 0; i < 20; i++) await (await open()).close();
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const nc = await open();
    times.push(performance.now() - t0);
    await nc.close();
  }
  return times;
}

/**
 * Connects through the callout of an enforce-mode serve on `store`, for a
 * user of no rooms.
 */
async function enforceConnects(n: number, store: StoreKind): Promise<number[]> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-bench-connect-" });
  const idFile = `${dir}/internal.id`;
  const enforce = await startServe({
    extraArgs: ["--bus-auth", "enforce", ...storeArgs(store, idFile)],
  });
  try {
    const s = await openServeStore(enforce, store, idFile);
    const id = generateIdentity("bench");
    await addBenchUsers(s, [id], "bench");
    await s.close();
    const kp = new NativeNkeyPair(Prefix.User, id.signSeed);
    return await timeConnects(n, () =>
      connect({
        servers: `127.0.0.1:${enforce.natsPort}`,
        authenticator: busUserAuthenticator(kp),
        inboxPrefix: inboxPrefixFor(id.signPubHex),
      }));
  } finally {
    await enforce.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Runs the benchmark; `n` connects per mode. */
export async function benchConnect(
  n: number,
): Promise<{ auth: Summary; authKv: Summary; noAuth: Summary }> {
  const auth = await enforceConnects(n, "sqlite");
  const authKv = await enforceConnects(n, "kv");
  const open = await startServe();
  let noAuth: number[];
  try {
    noAuth = await timeConnects(n, () => connect({ servers: `127.0.0.1:${open.natsPort}` }));
  } finally {
    await open.stop();
  }
  return { auth: summarize(auth), authKv: summarize(authKv), noAuth: summarize(noAuth) };
}
