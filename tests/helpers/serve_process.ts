/**
 * Runs `unibus serve` as a real child process for integration tests, reading
 * its JSON log lines as they arrive.
 *
 * @module
 */

import { freePort, isAlive } from "./ports.ts";
import type { Identity } from "../../lib/identity/identity.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** A running (or finished) `unibus` process under test. */
export interface UnibusProcess {
  child: Deno.ChildProcess;
  /** Parsed JSON log lines from stdout, in order. */
  lines: Record<string, unknown>[];
  /** Everything written to stderr. */
  stderr(): string;
  /** Resolves with the first log line matching `pred`, or throws after `ms`. */
  waitFor(
    pred: (line: Record<string, unknown>) => boolean,
    ms?: number,
  ): Promise<Record<string, unknown>>;
  /** Resolves with the exit status once stdout and stderr are drained. */
  finished: Promise<Deno.CommandStatus>;
}

/**
 * What runs `unibus`: by default `deno run main.ts` from this checkout; a built
 * artifact (tests/artifact_test.ts) gives its path, the directory to run in and
 * the whole environment (nothing inherited, so no repository path leaks in).
 */
export interface Launcher {
  program: string;
  /** Put before the unibus arguments (e.g. `run -A <another checkout>/main.ts`). */
  args?: string[];
  cwd?: string;
  env?: Record<string, string>;
}

/**
 * Spawns `deno run main.ts ...args` (or `launcher.program ...args`).
 *
 * @example
 * ```ts
 * const p = spawnUnibus(["serve", "--http-addr", "127.0.0.1:0"]);
 * await p.waitFor((l) => l.msg === "unibus ready");
 * ```
 */
export function spawnUnibus(
  args: string[],
  env: Record<string, string> = {},
  launcher?: Launcher,
): UnibusProcess {
  const child = new Deno.Command(launcher?.program ?? Deno.execPath(), {
    args: launcher ? [...(launcher.args ?? []), ...args] : ["run", "--quiet", "-A", MAIN, ...args],
    env: launcher?.env ? { ...launcher.env, ...env } : { DENO_NO_UPDATE_CHECK: "1", ...env },
    clearEnv: launcher?.env !== undefined,
    cwd: launcher?.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: Record<string, unknown>[] = [];
  let stderrText = "";
  const waiters: Array<() => void> = [];
  const notify = () => waiters.splice(0).forEach((w) => w());

  const pumpStdout = (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const text = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          lines.push(JSON.parse(text));
        } catch {
          lines.push({ raw: text });
        }
      }
      notify();
    }
  })();
  const pumpStderr = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderrText += chunk;
    }
  })();
  const finished = (async () => {
    const status = await child.status;
    await Promise.all([pumpStdout, pumpStderr]);
    notify();
    return status;
  })();
  let done = false;
  finished.then(() => done = true);

  return {
    child,
    lines,
    stderr: () => stderrText,
    finished,
    async waitFor(pred, ms = 20_000) {
      const deadline = Date.now() + ms;
      let seen = 0;
      while (true) {
        for (; seen < lines.length; seen++) if (pred(lines[seen])) return lines[seen];
        if (done) {
          throw new Error(`unibus exited before the expected log line; stderr: ${stderrText}`);
        }
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new Error(
            `timed out waiting for a log line; last lines: ${
              JSON.stringify(lines.slice(-5))
            }; stderr: ${stderrText}`,
          );
        }
        await new Promise<void>((r) => {
          const t = setTimeout(r, Math.min(left, 200));
          waiters.push(() => {
            clearTimeout(t);
            r();
          });
        });
      }
    },
  };
}

/** A `serve` started on free loopback ports in a fresh data dir. */
export interface ServeUnderTest extends UnibusProcess {
  dataDir: string;
  httpPort: number;
  natsPort: number;
  httpUrl: string;
  natsPid: number;
  /** SIGTERM, wait, and remove the data dir (safe to call twice). */
  stop(): Promise<Deno.CommandStatus>;
}

/**
 * Starts `serve` and waits until it logs "unibus ready".
 *
 * @example
 * ```ts
 * const s = await startServe();
 * try { await fetch(`${s.httpUrl}/healthz`); } finally { await s.stop(); }
 * ```
 */
export async function startServe(
  options: {
    dataDir?: string;
    httpPort?: number;
    natsPort?: number;
    extraArgs?: string[];
    env?: Record<string, string>;
    launcher?: Launcher;
  } = {},
): Promise<ServeUnderTest> {
  const dataDir = options.dataDir ?? await Deno.makeTempDir({ prefix: "unibus-serve-" });
  // A port found free can be taken (by any client's outgoing connection)
  // before serve binds it: the HTTP side asks for port 0 and reads the real
  // one from the ready line; the NATS side retries with another port.
  let p: UnibusProcess;
  let ready: Record<string, unknown>;
  let natsPort: number;
  for (let attempt = 0;; attempt++) {
    natsPort = options.natsPort ?? freePort();
    p = spawnUnibus(
      [
        "serve",
        "--data-dir",
        dataDir,
        "--http-addr",
        `127.0.0.1:${options.httpPort ?? 0}`,
        "--nats-port",
        String(natsPort),
        ...(options.extraArgs ?? []),
      ],
      options.env,
      options.launcher,
    );
    try {
      ready = await p.waitFor((l) => l.msg === "unibus ready");
      break;
    } catch (err) {
      try {
        p.child.kill("SIGTERM");
      } catch { /* gone */ }
      await p.finished;
      const raced = /already in use/i.test(p.stderr()) && options.natsPort === undefined &&
        options.httpPort === undefined;
      if (!raced || attempt >= 3) throw err;
    }
  }
  const httpPort = Number(String(ready.httpAddr).split(":").pop());
  const natsPid = Number(ready.natsPid);
  let stopped: Promise<Deno.CommandStatus> | null = null;
  return {
    ...p,
    dataDir,
    httpPort,
    natsPort,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    natsPid,
    stop() {
      stopped ??= (async () => {
        try {
          p.child.kill("SIGTERM");
        } catch { /* already exited */ }
        const status = await p.finished;
        // Never leave a nats-server behind, even when the test failed.
        for (const l of p.lines) {
          const pid = Number(l.pid);
          if (l.msg === "nats-server started" && isAlive(pid)) Deno.kill(pid, "SIGKILL");
        }
        if (!options.dataDir) await Deno.remove(dataDir, { recursive: true }).catch(() => {});
        return status;
      })();
      return stopped;
    },
  };
}

/** A finished CLI run. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  lines: Record<string, unknown>[];
}

/**
 * Runs `unibus ...args` to completion.
 *
 * @example
 * ```ts
 * const r = await runUnibus(["user", "list", "--db", db]);
 * ```
 */
/**
 * The `unibus user add` arguments that register `id` (with its kex key) as
 * `role`; the caller adds where (`--db` or the KV target).
 *
 * @example
 * ```ts
 * await runUnibus([...userAddArgs(ada, "admin"), "--db", db]);
 * ```
 */
export function userAddArgs(id: Identity, role = "member", handle = id.handle): string[] {
  return [
    "user",
    "add",
    "--handle",
    handle ?? "user",
    "--sign-pub",
    id.signPubHex,
    "--kex-pub",
    id.kexPubHex,
    "--kex-sig",
    id.kexSigHex,
    "--role",
    role,
  ];
}

export async function runUnibus(args: string[], launcher?: Launcher): Promise<CliRun> {
  const p = spawnUnibus(args, {}, launcher);
  const status = await p.finished;
  const stdout = p.lines
    .map((l) => typeof l.raw === "string" ? l.raw : JSON.stringify(l))
    .join("\n");
  return { code: status.code, stdout, stderr: p.stderr(), lines: p.lines };
}

/** The non-empty lines of a run's stderr. */
export function stderrLines(r: CliRun): string[] {
  return r.stderr.split("\n").filter((l) => l.length > 0);
}
