/**
 * Messages per second and round-trip latency: raw nats.js against unibus E2E
 * rooms (encrypted, sender-signed), in the same run, against one `unibus
 * serve` in enforce mode. Publisher and subscriber are separate processes.
 *
 * @module
 */

import { connect } from "../../lib/client/client.ts";
import { generateIdentity, saveIdentity } from "../../lib/identity/identity.ts";
import { startServe } from "../../tests/helpers/serve_process.ts";
import type { Summary } from "./stats.ts";
import { registerUsers } from "./users.ts";

const WORKER = new URL("./worker.ts", import.meta.url).pathname;

/** A worker process and its JSON lines. */
function spawnWorker(role: string, cfg: Record<string, unknown>) {
  // UNIBUS_BENCH_CPU_PROF=<dir>: every worker writes a V8 CPU profile there
  // (scripts/bench/profile_top.ts summarises one).
  const prof = Deno.env.get("UNIBUS_BENCH_CPU_PROF");
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      ...(prof ? ["--cpu-prof", `--cpu-prof-dir=${prof}/${role}-${cfg.size ?? 0}`] : []),
      "-A",
      WORKER,
      role,
      JSON.stringify(cfg),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines: Record<string, unknown>[] = [];
  const waiters: Array<() => void> = [];
  let cursor = 0;
  let exited = false;
  (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        lines.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
        waiters.splice(0).forEach((w) => w());
      }
    }
    exited = true;
    waiters.splice(0).forEach((w) => w());
  })();
  return {
    child,
    /** The worker's next line, in order; throws if it exits first. */
    async next(): Promise<Record<string, unknown>> {
      while (cursor >= lines.length) {
        if (exited) throw new Error(`worker ${role} exited without a result`);
        await new Promise<void>((r) => waiters.push(r));
      }
      return lines[cursor++];
    },
    /** SIGTERM (the worker exits cleanly, writing its CPU profile), SIGKILL after 5 s. */
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5000);
      await child.status;
      clearTimeout(timer);
    },
  };
}

/** Throughput of one pair. */
export interface Throughput {
  size: number;
  sent: number;
  received: number;
  msgsPerSec: number;
  mbPerSec: number;
  /**
   * CPU ms per MB of payload: the publisher (from its first publish to its
   * last flush), the subscriber (from its first message to its last) and,
   * when its pid is given, nats-server (from the publisher's start to the
   * subscriber's end). On this 2-core machine the three share two cores.
   */
  cpuMsPerMB?: { pub: number; sub: number; nats?: number };
}

// utime + stime of a process, ms (Linux /proc; clock ticks of 10 ms).
function procCpuMs(pid: number): number | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/**
 * Publisher → subscriber throughput of one pair of workers; `cfg.pubUrl` and
 * `cfg.pubCtrl` put the publisher on another node than the subscriber.
 *
 * @example
 * ```ts
 * const t = await throughput("raw", { url, subject: "bench.raw", count: 1000, size: 256 });
 * ```
 */
export async function throughput(
  prefix: "raw" | "e2e",
  cfg: Record<string, unknown>,
  natsPid?: number,
): Promise<Throughput> {
  const sub = spawnWorker(`${prefix}-sub`, cfg);
  let pub: ReturnType<typeof spawnWorker> | undefined;
  // A worker that fails (or a result that never comes) must not leave the
  // other one running: both are stopped, a no-op for one that has exited.
  try {
    await sub.next(); // ready
    // Across nodes the subscription's interest reaches the publisher's node a
    // moment later (route propagation); messages sent before it are dropped.
    const settle = cfg.settleMs;
    if (typeof settle === "number") await new Promise((r) => setTimeout(r, settle));
    const nats0 = natsPid ? procCpuMs(natsPid) : undefined;
    pub = spawnWorker(`${prefix}-pub`, {
      ...cfg,
      identity: cfg.pubIdentity ?? cfg.identity,
      url: cfg.pubUrl ?? cfg.url,
      ctrl: cfg.pubCtrl ?? cfg.ctrl,
    });
    const res = await sub.next() as { received: number; ms: number; cpuMs: number };
    const nats1 = natsPid ? procCpuMs(natsPid) : undefined;
    const sent = await pub.next() as { cpuMs: number };
    await Promise.all([sub.child.status, pub.child.status]);
    const msgsPerSec = res.received / (res.ms / 1000);
    const mb = (res.received * (cfg.size as number)) / 1e6;
    const perMB = (ms: number) => Math.round((10 * ms) / mb) / 10;
    return {
      size: cfg.size as number,
      sent: cfg.count as number,
      received: res.received,
      msgsPerSec: Math.round(msgsPerSec),
      mbPerSec: Math.round((msgsPerSec * (cfg.size as number)) / 1e5) / 10,
      cpuMsPerMB: {
        pub: perMB(sent.cpuMs),
        sub: perMB(res.cpuMs),
        ...(nats0 !== undefined && nats1 !== undefined ? { nats: perMB(nats1 - nats0) } : {}),
      },
    };
  } finally {
    await Promise.all([sub.stop(), pub?.stop()]);
  }
}

/**
 * Round-trip latency: an echo worker and a ping worker (each on the node its
 * config names).
 *
 * @example
 * ```ts
 * const lat = await latency("raw", { url, subject: "p" }, { url, subject: "p", count: 100, size: 256 });
 * ```
 */
export async function latency(
  prefix: "raw" | "e2e",
  echoCfg: Record<string, unknown>,
  pingCfg: Record<string, unknown>,
) {
  const echo = spawnWorker(`${prefix}-echo`, echoCfg);
  let ping: ReturnType<typeof spawnWorker> | undefined;
  try {
    await echo.next();
    ping = spawnWorker(`${prefix}-ping`, pingCfg);
    const res = await ping.next() as unknown as Summary;
    await ping.child.status;
    return res;
  } finally {
    await Promise.all([echo.stop(), ping?.stop()]);
  }
}

/** How many messages to send of a size: `count` at 256 B, fewer bytes' worth above. */
export function countFor(count: number, size: number): number {
  return size <= 256 ? count : Math.max(1000, Math.round((count * 256) / size) * 4);
}

/**
 * Runs the E2E benchmark: per payload size, raw then E2E throughput
 * (`count` messages at 256 B, see {@linkcode countFor}), then the round trip.
 */
export async function benchE2E(count: number, pings: number, sizes = [256]) {
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce"] });
  const dir = await Deno.makeTempDir({ prefix: "unibus-bench-" });
  try {
    const ids = [generateIdentity("bench-a"), generateIdentity("bench-b")];
    await registerUsers(s.dataDir, ids, "bench");
    const files: string[] = [];
    for (const [i, id] of ids.entries()) {
      files.push(`${dir}/id${i}.json`);
      await saveIdentity(files[i], id);
    }
    const url = `nats://127.0.0.1:${s.natsPort}`;
    const admin = await connect({ natsServers: [url], ctrlUrls: [s.httpUrl], identity: ids[0] });
    const e2eRoom = await admin.createRoom("bench.e2e");
    await admin.addMember(e2eRoom, ids[1].signPubHex);
    const pingRoom = await admin.createRoom("bench.ping");
    await admin.addMember(pingRoom, ids[1].signPubHex);
    await admin.close();

    // Raw is plain nats.js against the same nats-server build, managed by a
    // second serve with auth off: the data plane without unibus on top.
    const open = await startServe();
    try {
      const rawUrl = `nats://127.0.0.1:${open.natsPort}`;
      const tput: Array<{ raw: Throughput; e2e: Throughput }> = [];
      for (const size of sizes) {
        const n = countFor(count, size);
        // Raw and E2E of one size back to back: the machine's load is the
        // most alike for the two figures that are divided.
        const raw = await throughput(
          "raw",
          { url: rawUrl, subject: "bench.raw", count: n, size },
          open.natsPid,
        );
        const e2e = await throughput("e2e", {
          url,
          ctrl: s.httpUrl,
          identity: files[1],
          pubIdentity: files[0],
          room: e2eRoom.id,
          count: n,
          size,
        }, s.natsPid);
        tput.push({ raw, e2e });
      }
      const rawLat = await latency("raw", { url: rawUrl, subject: "bench.ping" }, {
        url: rawUrl,
        subject: "bench.ping",
        count: pings,
        size: 256,
      });
      const e2eLat = await latency(
        "e2e",
        { url, ctrl: s.httpUrl, identity: files[1], room: pingRoom.id },
        { url, ctrl: s.httpUrl, identity: files[0], room: pingRoom.id, count: pings, size: 256 },
      );
      return { tput, rawLat, e2eLat };
    } finally {
      await open.stop();
    }
  } finally {
    await s.stop();
    await Deno.remove(dir, { recursive: true });
  }
}
