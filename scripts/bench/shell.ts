/**
 * Whether `unibus listen` keeps up with `unibus send`: `send` of N lines
 * from a file into an encrypted room, `listen --json --count N` in another
 * process (both through the real launcher, scripts/unibus), against the
 * client library doing the same in one process, in the same run.
 *
 * @module
 */

import { connect } from "../../lib/client/client.ts";
import { generateIdentity, saveIdentity } from "../../lib/identity/identity.ts";
import { openSqliteStore } from "../../lib/store/sqlite.ts";
import { startServe } from "../../tests/helpers/serve_process.ts";
import { addBenchUsers } from "./users.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");

/** What {@linkcode benchShell} measured. */
export interface ShellFigures {
  lines: number;
  /** `listen` printed this many of them. */
  received: number;
  /** From `send` starting to `listen` having printed the last. */
  shellMs: number;
  shellPerSec: number;
  /** From the first line `listen` printed to the last: the rate once both run. */
  streamPerSec: number;
  /** The library: one client publishing, another receiving, same count. */
  libraryMs: number;
  libraryPerSec: number;
}

function unibus(args: string[], env: Record<string, string>, stdin: "piped" | "null" = "null") {
  return new Deno.Command("bash", {
    args: [`${ROOT}/scripts/unibus`, ...args],
    env,
    stdin,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/**
 * Runs the measurement with `lines` messages.
 *
 * @example
 * ```ts
 * const f = await benchShell(10_000);
 * console.log(f.received, f.shellPerSec, f.libraryPerSec);
 * ```
 */
export async function benchShell(lines: number): Promise<ShellFigures> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-bench-shell-" });
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce"] });
  try {
    const ada = generateIdentity("ada");
    const bob = generateIdentity("bob");
    const store = await openSqliteStore(`${s.dataDir}/unibus.db`);
    await addBenchUsers(store, [ada, bob], "shell");
    await store.close();
    await saveIdentity(`${dir}/ada.id`, ada);
    await saveIdentity(`${dir}/bob.id`, bob);
    const target = (who: string) => [
      "--identity-file",
      `${dir}/${who}.id`,
      "--nats-seeds",
      `nats://127.0.0.1:${s.natsPort}`,
      "--ctrl-seeds",
      s.httpUrl,
    ];
    const env = { DENO_NO_UPDATE_CHECK: "1", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" };
    const made = await unibus(
      ["room", "create", "bench.shell", "--member", bob.signPubHex, "--json", ...target("ada")],
      env,
    ).output();
    if (!made.success) throw new Error(new TextDecoder().decode(made.stderr));
    const file = `${dir}/lines.txt`;
    await Deno.writeTextFile(
      file,
      Array.from({ length: lines }, (_, i) => `line ${i} ${"x".repeat(40)}`).join("\n") + "\n",
    );

    // The shell: listen (ready on stderr), then send from the file.
    const listen = unibus(
      [
        "listen",
        "bench.shell",
        "--json",
        "--count",
        String(lines),
        "--timeout",
        "300s",
        ...target("bob"),
      ],
      env,
    );
    // Neither child outlives the run, whatever fails in it.
    let send: Deno.ChildProcess | null = null;
    let received = 0;
    let shellMs = 0;
    let firstAt = 0;
    let lastAt = 0;
    try {
      const ready = Promise.withResolvers<void>();
      const stderr = (async () => {
        let text = "";
        for await (const c of listen.stderr.pipeThrough(new TextDecoderStream())) {
          text += c;
          if (text.split("\n").includes("ready")) ready.resolve();
        }
        return text;
      })();
      const counted = (async () => {
        let n = 0;
        for await (const c of listen.stdout.pipeThrough(new TextDecoderStream())) {
          for (const ch of c) if (ch === "\n") n++;
          lastAt = performance.now();
          if (firstAt === 0) firstAt = lastAt;
        }
        return n;
      })();
      await Promise.race([
        ready.promise,
        listen.status.then(async () => {
          throw new Error(`listen ended: ${await stderr}`);
        }),
      ]);
      const t0 = performance.now();
      send = unibus(["send", "bench.shell", ...target("ada")], env, "piped");
      const input = await Deno.open(file);
      await input.readable.pipeTo(send.stdin);
      const sent = await send.output();
      if (!sent.success) throw new Error(new TextDecoder().decode(sent.stderr));
      await listen.status;
      received = await counted;
      shellMs = performance.now() - t0;
    } catch (err) {
      for (const child of [listen, send]) {
        try {
          child?.kill("SIGKILL");
        } catch { /* already ended */ }
      }
      throw err;
    }

    // The library, same room, same count.
    const seeds = {
      natsServers: [`nats://127.0.0.1:${s.natsPort}`],
      ctrlUrls: [s.httpUrl],
    };
    const a = await connect({ ...seeds, identity: ada });
    const b = await connect({ ...seeds, identity: bob });
    let libraryMs = 0;
    try {
      let got = 0;
      const all = Promise.withResolvers<void>();
      const sub = await b.subscribe("bench.shell", () => {
        if (++got === lines) all.resolve();
      });
      const t1 = performance.now();
      for (let i = 0; i < lines; i++) a.publish("bench.shell", `line ${i} ${"x".repeat(40)}`);
      await a.flush();
      await Promise.race([all.promise, new Promise((r) => setTimeout(r, 120_000))]);
      libraryMs = performance.now() - t1;
      sub.unsubscribe();
    } finally {
      await a.close();
      await b.close();
    }
    return {
      lines,
      received,
      shellMs: Math.round(shellMs),
      shellPerSec: Math.round(lines / (shellMs / 1000)),
      streamPerSec: Math.round((lines - 1) / (Math.max(1, lastAt - firstAt) / 1000)),
      libraryMs: Math.round(libraryMs),
      libraryPerSec: Math.round(lines / (libraryMs / 1000)),
    };
  } finally {
    await s.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
