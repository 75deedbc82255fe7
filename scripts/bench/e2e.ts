/**
 * Messages per second and round-trip latency: raw nats.js against unibus E2E
 * rooms (encrypted, sender-signed), in the same run, against one `unibus
 * serve` in enforce mode. Publisher and subscriber are separate processes.
 *
 * @module
 */

import { openSqliteStore } from "../../lib/store/sqlite.ts";
import { connect } from "../../lib/client/client.ts";
import { generateIdentity, saveIdentity } from "../../lib/identity/identity.ts";
import { startServe } from "../../tests/helpers/serve_process.ts";
import type { Summary } from "./stats.ts";

const WORKER = new URL("./worker.ts", import.meta.url).pathname;

/** A worker process and its JSON lines. */
function spawnWorker(role: string, cfg: Record<string, unknown>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "-A", WORKER, role, JSON.stringify(cfg)],
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
    kill() {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    },
  };
}

/** Throughput of one pair. */
export interface Throughput {
  sent: number;
  received: number;
  msgsPerSec: number;
}

async function throughput(
  prefix: "raw" | "e2e",
  cfg: Record<string, unknown>,
): Promise<Throughput> {
  const sub = spawnWorker(`${prefix}-sub`, cfg);
  await sub.next(); // ready
  const pub = spawnWorker(`${prefix}-pub`, { ...cfg, identity: cfg.pubIdentity ?? cfg.identity });
  const res = await sub.next() as { received: number; ms: number };
  await pub.next();
  await Promise.all([sub.child.status, pub.child.status]);
  return {
    sent: cfg.count as number,
    received: res.received,
    msgsPerSec: Math.round(res.received / (res.ms / 1000)),
  };
}

async function latency(
  prefix: "raw" | "e2e",
  echoCfg: Record<string, unknown>,
  pingCfg: Record<string, unknown>,
) {
  const echo = spawnWorker(`${prefix}-echo`, echoCfg);
  await echo.next();
  const ping = spawnWorker(`${prefix}-ping`, pingCfg);
  const res = await ping.next() as unknown as Summary;
  await ping.child.status;
  echo.kill();
  await echo.child.status;
  return res;
}

/** Runs the E2E benchmark with `count` messages per throughput run. */
export async function benchE2E(count: number, pings: number) {
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce"] });
  const dir = await Deno.makeTempDir({ prefix: "unibus-bench-" });
  try {
    const store = await openSqliteStore(`${s.dataDir}/unibus.db`);
    const ids = [generateIdentity("bench-a"), generateIdentity("bench-b")];
    const files: string[] = [];
    for (const [i, id] of ids.entries()) {
      await store.addUser({
        signPub: id.signPubHex,
        handle: `bench-${i}`,
        role: "member",
        kexPub: id.kexPubHex,
        kexSig: id.kexSigHex,
      });
      files.push(`${dir}/id${i}.json`);
      await saveIdentity(files[i], id);
    }
    await store.close();
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
      const raw = await throughput("raw", { url: rawUrl, subject: "bench.raw", count, size: 256 });
      const e2e = await throughput("e2e", {
        url,
        ctrl: s.httpUrl,
        identity: files[1],
        pubIdentity: files[0],
        room: e2eRoom.id,
        count,
        size: 256,
      });
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
      return { raw, e2e, rawLat, e2eLat };
    } finally {
      await open.stop();
    }
  } finally {
    await s.stop();
    await Deno.remove(dir, { recursive: true });
  }
}
