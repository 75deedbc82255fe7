/**
 * One side of a throughput or latency measurement, run as its own process
 * so that publisher and subscriber each have a core (scripts/bench/e2e.ts
 * starts them). Prints one JSON line with its result.
 *
 *   worker.ts raw-sub   '{"url","subject","count"}'
 *   worker.ts raw-pub   '{"url","subject","count","size"}'
 *   worker.ts raw-echo  '{"url","subject"}'                  replies until killed
 *   worker.ts raw-ping  '{"url","subject","count"}'
 *   worker.ts e2e-sub / e2e-pub / e2e-echo / e2e-ping          same, plus "ctrl","identity","room"
 *
 * A raw role given "identity" (an identity file) logs in to an enforce-mode
 * node as docs/clients.md's stock nats.js client does; "subject" is then a
 * plain room's subject the identity is a member of.
 *
 * @module
 */

import process from "node:process";
import { connect as natsConnect } from "@nats-io/transport-node";
import { encode as base64, fromSeed, Prefix } from "@nats-io/nkeys";
// The package root has no way to spell a raw seed as an nkey seed string.
import { Codec } from "@nats-io/nkeys/lib/codec.js";
import { connect } from "../../lib/client/client.ts";
import { loadIdentity } from "../../lib/identity/identity.ts";
import { installConnectionResetGuard } from "../../lib/nats/connection_reset_guard.ts";
import { summarize } from "./stats.ts";

installConnectionResetGuard();
// The echo roles run until scripts/bench/e2e.ts stops them: exit cleanly so
// that a CPU profile (UNIBUS_BENCH_CPU_PROF) is written.
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
const [role, configText] = Deno.args;
const cfg = JSON.parse(configText);
const say = (o: unknown) => console.log(JSON.stringify(o));
const payload = new Uint8Array(cfg.size ?? 256).fill(120);
// Both publishers, raw and E2E, await a flush after every FLUSH_EVERY
// messages: the same cadence, so neither side of a ratio gets a pacing the
// other does not (before issue 12 round 3, raw flushed every 10,000 and E2E
// every 4,096).
const FLUSH_EVERY = 4096;
// This process's CPU time (user + system), ms: which side of a pair limits
// shows in how much CPU each spent on the same messages.
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function e2eClient() {
  return await connect({
    natsServers: [cfg.url],
    ctrlUrls: [cfg.ctrl],
    identity: await loadIdentity(cfg.identity),
  });
}

/**
 * A raw nats.js connection; with `cfg.identity`, the login of docs/clients.md
 * (context-prefixed nonce signature, own inbox prefix) so that the raw
 * figures on an enforce-mode cluster are those of a stock client.
 */
async function rawConnect() {
  if (!cfg.identity) return await natsConnect({ servers: cfg.url });
  const file = JSON.parse(await Deno.readTextFile(cfg.identity)) as {
    sign_pub: string;
    sign_seed: string;
  };
  const seed = Uint8Array.from(file.sign_seed.match(/../g)!, (h) => parseInt(h, 16));
  const kp = fromSeed(Codec.encodeSeed(Prefix.User, seed));
  return await natsConnect({
    servers: cfg.url,
    inboxPrefix: `_INBOX.${file.sign_pub}`,
    authenticator: (nonce?: string) => {
      // Sign nothing but a nonce (docs/clients.md, "Why the context string").
      if (!nonce || !/^[A-Za-z0-9_-]{8,64}$/.test(nonce)) throw new Error("not a nonce");
      const text = new TextEncoder().encode(`unibus/nats-auth/v1\n${nonce}`);
      return { nkey: kp.getPublicKey(), sig: base64(kp.sign(text)) };
    },
  });
}

function counter(count: number) {
  let n = 0;
  let first = 0;
  let cpu0 = 0;
  const done = Promise.withResolvers<{ received: number; ms: number; cpuMs: number }>();
  const result = () => ({ received: n, ms: performance.now() - first, cpuMs: cpuMs() - cpu0 });
  const timeout = setTimeout(() => done.resolve(result()), 60_000);
  return {
    hit() {
      if (n === 0) {
        first = performance.now();
        cpu0 = cpuMs();
      }
      if (++n === count) {
        clearTimeout(timeout);
        done.resolve(result());
      }
    },
    done: done.promise,
  };
}

switch (role) {
  case "raw-sub": {
    const nc = await rawConnect();
    const c = counter(cfg.count);
    nc.subscribe(cfg.subject, { callback: () => c.hit() });
    await nc.flush();
    say({ ready: true });
    say(await c.done);
    await nc.close();
    break;
  }
  case "raw-pub": {
    const nc = await rawConnect();
    const t0 = performance.now();
    const cpu0 = cpuMs();
    for (let i = 0; i < cfg.count; i++) {
      nc.publish(cfg.subject, payload);
      if (i % FLUSH_EVERY === FLUSH_EVERY - 1) await nc.flush();
    }
    await nc.flush();
    say({ sent: cfg.count, ms: performance.now() - t0, cpuMs: cpuMs() - cpu0 });
    await nc.close();
    break;
  }
  case "raw-echo": {
    const nc = await rawConnect();
    nc.subscribe(cfg.subject, {
      callback: (_e, m) => {
        m.respond(m.data);
      },
    });
    await nc.flush();
    say({ ready: true });
    await new Promise(() => {});
    break;
  }
  case "raw-ping": {
    const nc = await rawConnect();
    const times: number[] = [];
    for (let i = 0; i < cfg.count + 200; i++) {
      const t0 = performance.now();
      await nc.request(cfg.subject, payload, { timeout: 5000 });
      if (i >= 200) times.push(performance.now() - t0);
    }
    say(summarize(times));
    await nc.close();
    break;
  }
  case "e2e-sub": {
    const client = await e2eClient();
    const c = counter(cfg.count);
    await client.subscribe(cfg.room, () => c.hit());
    say({ ready: true });
    say(await c.done);
    await client.close();
    break;
  }
  case "e2e-pub": {
    const client = await e2eClient();
    const t0 = performance.now();
    const cpu0 = cpuMs();
    for (let i = 0; i < cfg.count; i++) {
      client.publish(cfg.room, payload);
      // Let the batches go out (and NATS push back) every few thousand.
      if (i % FLUSH_EVERY === FLUSH_EVERY - 1) await client.flush();
    }
    await client.flush();
    say({ sent: cfg.count, ms: performance.now() - t0, cpuMs: cpuMs() - cpu0 });
    await client.close();
    break;
  }
  case "e2e-echo": {
    const client = await e2eClient();
    await client.subscribe(cfg.room, (meta, data) => {
      if (meta.reply) client.respond(cfg.room, meta, data);
    });
    say({ ready: true });
    await new Promise(() => {});
    break;
  }
  case "e2e-ping": {
    const client = await e2eClient();
    const times: number[] = [];
    for (let i = 0; i < cfg.count + 200; i++) {
      const t0 = performance.now();
      await client.request(cfg.room, payload, { timeoutMs: 5000 });
      if (i >= 200) times.push(performance.now() - t0);
    }
    say(summarize(times));
    await client.close();
    break;
  }
  default:
    console.error(`unknown role ${role}`);
    Deno.exit(2);
}
Deno.exit(0);
