/**
 * The control plane on SQLite and on JetStream KV, side by side in one run
 * (issue 9): signed request latency (create a room; add a member: a signed
 * change), connect latency through the auth callout, and revoke-to-cut (the
 * allowlist changed by another process, as `unibus user revoke` does, until
 * the live connection is closed). Each store gets its own `serve --bus-auth
 * enforce` on loopback; the whole comparison is repeated and reported as
 * min / median / max of each figure over the repeats.
 *
 * Run alone: `deno run -A scripts/bench/control_plane.ts [--requests=200]
 * [--connects=200] [--revokes=10] [--repeat=3]`.
 *
 * @module
 */

import { connect, type NatsConnection } from "@nats-io/transport-node";
import { inboxPrefixFor } from "../../lib/auth/acl.ts";
import { busUserAuthenticator, NativeNkeyPair, Prefix } from "../../lib/auth/nkey.ts";
import { generateIdentity, type Identity } from "../../lib/identity/identity.ts";
import { installConnectionResetGuard } from "../../lib/nats/connection_reset_guard.ts";
import type { Store } from "../../lib/store/store.ts";
import type { RoomView } from "../../server/rooms/state.ts";
import { as, genesis, nextChange, startBus, stopBus } from "../../tests/helpers/rooms_api.ts";
import type { StoreKind } from "../../tests/helpers/serve_store.ts";
import { spread, summarize, type Summary } from "./stats.ts";

/** One store's figures in one repeat, milliseconds. */
export interface StoreRun {
  createRoom: Summary;
  addMember: Summary;
  connect: Summary;
  revokeToCut: Summary;
}

/** Sizes of one run; every loop is bounded by them and by `maxMs`. */
export interface ControlPlaneBenchOptions {
  requests: number;
  connects: number;
  revokes: number;
  repeat: number;
  /** Per store and repeat; the run fails beyond it. */
  maxMs?: number;
}

const CUT_DEADLINE_MS = 10_000;

async function enrol(store: Store, handle: string): Promise<Identity> {
  const id = generateIdentity(handle);
  await store.addUser({
    signPub: id.signPubHex,
    handle,
    role: "member",
    kexPub: id.kexPubHex,
    kexSig: id.kexSigHex,
  });
  return id;
}

function connectAs(port: number, id: Identity): Promise<NatsConnection> {
  return connect({
    servers: `127.0.0.1:${port}`,
    authenticator: busUserAuthenticator(new NativeNkeyPair(Prefix.User, id.signSeed)),
    inboxPrefix: inboxPrefixFor(id.signPubHex),
    reconnect: false,
  });
}

async function timed<T>(samples: number[], fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const v = await fn();
  samples.push(performance.now() - t0);
  return v;
}

async function runStore(kind: StoreKind, o: ControlPlaneBenchOptions): Promise<StoreRun> {
  const bus = await startBus(["--max-rooms-per-user", String(o.requests * 2 + 100)], kind);
  const { s, store } = bus;
  const deadline = Date.now() + (o.maxMs ?? 300_000);
  const inTime = () => {
    if (Date.now() > deadline) throw new Error(`control-plane bench (${kind}) ran out of time`);
  };
  try {
    const admin = await enrol(store, "admin");
    const members = await Promise.all([0, 1, 2, 3].map((i) => enrol(store, `m${i}`)));
    const api = as(bus, admin);

    // Signed requests: 20 warm-up rounds, then `requests` timed ones.
    const creates: number[] = [];
    const adds: number[] = [];
    for (let i = -20; i < o.requests; i++) {
      inTime();
      const c = await timed(
        i < 0 ? [] : creates,
        () =>
          api.post<RoomView>("/v1/rooms", { change: genesis(admin, { subject: `b.r${i + 20}` }) }),
      );
      if (c.status !== 201) throw new Error(`create room: ${c.status} ${JSON.stringify(c.body)}`);
      const m = members[(i + 20) % members.length];
      const a = await timed(
        i < 0 ? [] : adds,
        () =>
          api.post(`/v1/rooms/${c.body.id}/changes`, {
            change: nextChange(c.body, admin, "add", m),
          }),
      );
      if (a.status !== 200) throw new Error(`add member: ${a.status} ${JSON.stringify(a.body)}`);
    }

    // Connects through the callout.
    const connects: number[] = [];
    const user = await enrol(store, "connector");
    for (let i = -20; i < o.connects; i++) {
      inTime();
      const nc = await timed(i < 0 ? [] : connects, () => connectAs(s.natsPort, user));
      await nc.close();
    }

    // Revoke-to-cut: another writer revokes; the clock stops when serve's
    // enforcer has cut the live connection.
    const cuts: number[] = [];
    for (let i = 0; i < o.revokes; i++) {
      inTime();
      const victim = await enrol(store, `victim${i}`);
      const nc = await connectAs(s.natsPort, victim);
      // Admitted and recorded before the clock starts.
      await s.waitFor((l) => l.msg === "connection admitted" && l.signPub === victim.signPubHex);
      const t0 = performance.now();
      await store.revokeUser(victim.signPubHex);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const cut = await Promise.race([
        nc.closed().then(() => true),
        new Promise<false>((r) => timer = setTimeout(() => r(false), CUT_DEADLINE_MS)),
      ]);
      clearTimeout(timer);
      if (!cut) {
        await nc.close();
        throw new Error(`a revoked connection was not cut within ${CUT_DEADLINE_MS} ms (${kind})`);
      }
      cuts.push(performance.now() - t0);
    }
    return {
      createRoom: summarize(creates),
      addMember: summarize(adds),
      connect: summarize(connects),
      revokeToCut: summarize(cuts),
    };
  } finally {
    await stopBus(bus);
  }
}

/** Each store's runs, in the order they ran (the stores alternate). */
export type ControlPlaneResult = Record<StoreKind, StoreRun[]>;

/**
 * Runs the comparison `repeat` times, alternating the stores so that load
 * from other work on the machine falls on both.
 *
 * @example
 * ```ts
 * const r = await benchControlPlane({ requests: 200, connects: 200, revokes: 10, repeat: 3 });
 * console.log(controlPlaneTable(r));
 * ```
 */
export async function benchControlPlane(o: ControlPlaneBenchOptions): Promise<ControlPlaneResult> {
  const out: ControlPlaneResult = { sqlite: [], kv: [] };
  for (let r = 0; r < o.repeat; r++) {
    for (const kind of ["sqlite", "kv"] as const) out[kind].push(await runStore(kind, o));
  }
  return out;
}

/**
 * The Markdown table of a {@linkcode benchControlPlane} result.
 *
 * @example
 * ```ts
 * console.log(controlPlaneTable(await benchControlPlane(opts)));
 * ```
 */
export function controlPlaneTable(r: ControlPlaneResult): string {
  const cell = (runs: StoreRun[], pick: (x: StoreRun) => number) => spread(runs.map(pick), 2);
  const rows: Array<[string, (x: StoreRun) => number]> = [
    ["create room p50", (x) => x.createRoom.p50],
    ["create room p99", (x) => x.createRoom.p99],
    ["add member p50", (x) => x.addMember.p50],
    ["add member p99", (x) => x.addMember.p99],
    ["connect (callout) p50", (x) => x.connect.p50],
    ["connect (callout) p99", (x) => x.connect.p99],
    ["revoke → cut p50", (x) => x.revokeToCut.p50],
    ["revoke → cut max", (x) => x.revokeToCut.max],
  ];
  const n = r.sqlite[0];
  return [
    `Control plane, ${r.sqlite.length} repeats (min / median / max over repeats), ms; ` +
    `${n.createRoom.n} requests, ${n.connect.n} connects, ${n.revokeToCut.n} revocations per repeat:`,
    "",
    "| measurement | SQLite | KV (R1) |",
    "|---|---|---|",
    ...rows.map(([name, pick]) => `| ${name} | ${cell(r.sqlite, pick)} | ${cell(r.kv, pick)} |`),
  ].join("\n");
}

if (import.meta.main) {
  installConnectionResetGuard();
  const arg = (name: string, d: number) =>
    Number(Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? d);
  const r = await benchControlPlane({
    requests: arg("requests", 200),
    connects: arg("connects", 200),
    revokes: arg("revokes", 10),
    repeat: arg("repeat", 3),
  });
  console.log(Deno.args.includes("--json") ? JSON.stringify(r, null, 2) : controlPlaneTable(r));
}
