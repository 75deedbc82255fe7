/**
 * The Python client beside the TypeScript client and raw nats-py, in one
 * run against one serve (enforce mode): publish → subscribe messages per
 * second and request/reply round trips (p50, p99) in an encrypted room, for
 * 256 B and 16 KiB payloads. The Python figures come from
 * scripts/bench/python_client.py in the project's virtual environment
 * (scripts/setup python); the TypeScript ones are measured here the same way.
 *
 * @module
 */

import { connect } from "../../lib/client/client.ts";
import { generateIdentity, saveIdentity } from "../../lib/identity/identity.ts";
import { startServe } from "../../tests/helpers/serve_process.ts";
import { registerUsers } from "./users.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
export const PYTHON_SIZES = [256, 16_384] as const;

/** One path's figures for one payload size. */
export interface PathFigures {
  msgs_per_s: number;
  p50_ms: number;
  p99_ms: number;
}

/** What {@linkcode benchPython} measured, per path and payload size (bytes, as text). */
export interface PythonFigures {
  messages: number;
  roundTrips: number;
  python: Record<string, PathFigures>;
  natsPy: Record<string, PathFigures>;
  typescript: Record<string, PathFigures>;
}

function percentile(sorted: number[], p: number): number {
  return Number(sorted[Math.max(0, Math.ceil(sorted.length * p) - 1)].toFixed(3));
}

/**
 * Runs the measurement: `messages` publishes per size (a tenth at 16 KiB)
 * and `roundTrips` requests.
 *
 * @example
 * ```ts
 * const f = await benchPython(5000, 300);
 * console.log(f.python["256"].msgs_per_s, f.typescript["256"].msgs_per_s);
 * ```
 */
export async function benchPython(messages: number, roundTrips: number): Promise<PythonFigures> {
  const python = Deno.env.get("UNIBUS_PYTHON");
  if (!python) throw new Error("UNIBUS_PYTHON is not set: run through `deno task bench`");
  const dir = await Deno.makeTempDir({ prefix: "unibus-bench-python-" });
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce"] });
  try {
    const ada = generateIdentity("ada");
    const bob = generateIdentity("bob");
    await registerUsers(s.dataDir, [ada, bob], "python");
    await saveIdentity(`${dir}/ada.id`, ada);
    await saveIdentity(`${dir}/bob.id`, bob);
    const nats = `nats://127.0.0.1:${s.natsPort}`;
    const run = await new Deno.Command(python, {
      args: [
        `${ROOT}/scripts/bench/python_client.py`,
        nats,
        s.httpUrl,
        `${dir}/ada.id`,
        `${dir}/bob.id`,
        String(messages),
        String(roundTrips),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!run.success) throw new Error(new TextDecoder().decode(run.stderr));
    const py = JSON.parse(new TextDecoder().decode(run.stdout));

    // The TypeScript client, the same steps.
    const typescript: Record<string, PathFigures> = {};
    const a = await connect({ natsServers: [nats], ctrlUrls: [s.httpUrl], identity: ada });
    const b = await connect({ natsServers: [nats], ctrlUrls: [s.httpUrl], identity: bob });
    try {
      const room = await a.createRoom("bench.ts.python", undefined, { members: [bob.signPubHex] });
      await b.refreshSession();
      await b.subscribe(room, (meta, data) => {
        if (meta.reply) b.respond(room, meta, data);
      });
      for (const size of PYTHON_SIZES) {
        const n = size === 256 ? messages : Math.max(1, Math.floor(messages / 10));
        const payload = crypto.getRandomValues(new Uint8Array(size));
        let got = 0;
        const all = Promise.withResolvers<void>();
        const sub = await b.subscribe(room, () => {
          if (++got === n) all.resolve();
        });
        const t0 = performance.now();
        for (let i = 0; i < n; i++) await a.publish(room, payload);
        const timer = setTimeout(() => all.reject(new Error(`${got} of ${n} in 120 s`)), 120_000);
        await all.promise.finally(() => clearTimeout(timer));
        const perS = Math.round(n / ((performance.now() - t0) / 1000));
        sub.unsubscribe();
        const times: number[] = [];
        for (let i = 0; i < roundTrips; i++) {
          const t = performance.now();
          await a.request(room, payload, { timeoutMs: 10_000 });
          times.push(performance.now() - t);
        }
        times.sort((x, y) => x - y);
        typescript[String(size)] = {
          msgs_per_s: perS,
          p50_ms: percentile(times, 0.5),
          p99_ms: percentile(times, 0.99),
        };
      }
      await a.deleteRoom(room);
    } finally {
      await a.close();
      await b.close();
    }
    return { messages, roundTrips, python: py.client, natsPy: py.nats_py, typescript };
  } finally {
    await s.stop();
    await Deno.remove(dir, { recursive: true });
  }
}
