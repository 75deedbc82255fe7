/**
 * Connect latency: an authenticated connect (nkey + auth callout, enforce
 * mode) on the SQLite and on the KV store against an unauthenticated one
 * (auth off), each against its own real `unibus serve`. All of them run at
 * once and the connects are interleaved (one to each, in a rotating order),
 * so load from elsewhere on the machine falls on every mode alike and the
 * same-run ratios hold even when the absolute figures swing.
 *
 * With a baseline checkout (`--baseline=<dir>`: another revision of this
 * repository, e.g. `git archive main | tar -x -C <dir>`), its enforce-mode
 * serves join the rotation: before and after in the same run.
 *
 * @module
 */

import { connect } from "@nats-io/transport-node";
import { inboxPrefixFor } from "../../lib/auth/acl.ts";
import { busUserAuthenticator, NativeNkeyPair, Prefix } from "../../lib/auth/nkey.ts";
import { generateIdentity } from "../../lib/identity/identity.ts";
import {
  type Launcher,
  type ServeUnderTest,
  startServe,
} from "../../tests/helpers/serve_process.ts";
import { openServeStore, storeArgs, type StoreKind } from "../../tests/helpers/serve_store.ts";
import { summarize, type Summary } from "./stats.ts";
import { addBenchUsers } from "./users.ts";

type Open = () => Promise<{ close(): Promise<void> }>;

/** One mode's serve and how to connect to it. */
interface Target {
  name: string;
  open: Open;
  stop(): Promise<void>;
}

/**
 * An enforce-mode serve on `store` (from `launcher`'s checkout, or this one)
 * and how a user of no rooms connects through its callout.
 */
async function enforceTarget(name: string, store: StoreKind, launcher?: Launcher): Promise<Target> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-bench-connect-" });
  const idFile = `${dir}/internal.id`;
  let s: ServeUnderTest | null = null;
  try {
    s = await startServe({
      extraArgs: ["--bus-auth", "enforce", ...storeArgs(store, idFile)],
      launcher,
    });
    const st = await openServeStore(s, store, idFile);
    const id = generateIdentity("bench");
    await addBenchUsers(st, [id], "bench");
    await st.close();
    const kp = new NativeNkeyPair(Prefix.User, id.signSeed);
    const port = s.natsPort;
    const serve = s;
    return {
      name,
      open: () =>
        connect({
          servers: `127.0.0.1:${port}`,
          authenticator: busUserAuthenticator(kp),
          inboxPrefix: inboxPrefixFor(id.signPubHex),
        }),
      async stop() {
        await serve.stop();
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      },
    };
  } catch (err) {
    await s?.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
}

/** The serve of another checkout, run with this Deno. */
function checkout(dir: string): Launcher {
  return { program: Deno.execPath(), args: ["run", "--quiet", "-A", `${dir}/main.ts`], cwd: dir };
}

/** What {@linkcode benchConnect} measured, ms per connect. */
export interface ConnectResult {
  auth: Summary;
  authKv: Summary;
  noAuth: Summary;
  /** The baseline checkout's enforce-mode serves, when one was given. */
  baseline?: { auth: Summary; authKv: Summary };
}

/**
 * Runs the benchmark: 20 warm-up connects to each mode, then `n` rounds of
 * one connect (+ close) to each, the order rotating by one every round.
 *
 * @example
 * ```ts
 * const r = await benchConnect(500, { baseline: "/tmp/unibus-main" });
 * console.log(r.auth.p50, r.baseline?.auth.p50);
 * ```
 */
export async function benchConnect(
  n: number,
  opts: { baseline?: string } = {},
): Promise<ConnectResult> {
  const targets: Target[] = [];
  try {
    targets.push(await enforceTarget("auth", "sqlite"));
    targets.push(await enforceTarget("authKv", "kv"));
    const open = await startServe();
    targets.push({
      name: "noAuth",
      open: () => connect({ servers: `127.0.0.1:${open.natsPort}` }),
      stop: async () => void await open.stop(),
    });
    if (opts.baseline) {
      targets.push(await enforceTarget("baseline.auth", "sqlite", checkout(opts.baseline)));
      targets.push(await enforceTarget("baseline.authKv", "kv", checkout(opts.baseline)));
    }
    // Warm-up: JIT, TCP and the first JWT minted are not what a client sees later.
    for (let i = 0; i < 20; i++) for (const t of targets) await (await t.open()).close();
    const times = new Map<string, number[]>(targets.map((t) => [t.name, []]));
    for (let round = 0; round < n; round++) {
      for (let k = 0; k < targets.length; k++) {
        const t = targets[(round + k) % targets.length];
        const t0 = performance.now();
        const nc = await t.open();
        times.get(t.name)!.push(performance.now() - t0);
        await nc.close();
      }
    }
    const of = (name: string) => summarize(times.get(name)!);
    return {
      auth: of("auth"),
      authKv: of("authKv"),
      noAuth: of("noAuth"),
      ...(opts.baseline
        ? { baseline: { auth: of("baseline.auth"), authKv: of("baseline.authKv") } }
        : {}),
    };
  } finally {
    for (const t of targets) await t.stop();
  }
}
