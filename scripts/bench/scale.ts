/**
 * How costs grow with the work (issue 12, "Scale"), each bounded in count
 * and time so that a 2-core CI-sized machine finishes in a few minutes:
 *
 * - `--storm=N` (1000) bus clients connecting at once through the auth
 *   callout: time until all are connected, denials, serve and nats-server RSS
 *   before and after.
 * - rooms of 2, 8 and 32 members made ready one add at a time and in one
 *   pass (`createRoom` with `members`), in the same run.
 * - `--rooms=R` (100) rooms × 10 members made through the client library
 *   (signed changes, rotations, sealed keys over HTTP): creation rate, then
 *   connect p50 for a member of 50 rooms (the ACL size) against one of none,
 *   serve's RSS.
 * - history at scale (scripts/bench/history.ts): `--history-messages=N`
 *   (1 000 000) messages packed as the client packs them and `--history=N`
 *   (100 000) one packet each, read from the start and from the middle.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { connect, type UnibusClient } from "../../lib/client/client.ts";
import { generateIdentity, type Identity } from "../../lib/identity/identity.ts";
import { startServe } from "../../tests/helpers/serve_process.ts";
import { summarize, type Summary } from "./stats.ts";
import { natsLogin, registerUsers, rssMiB } from "./users.ts";
import { benchHistory, historyReport } from "./history.ts";

const DEADLINE_MS = 180_000;

/** Result of the connect storm. */
export interface StormResult {
  clients: number;
  connected: number;
  denied: number;
  allConnectedMs: number;
  perConnect: Summary;
  rssBefore: { serveMiB: number; natsMiB: number };
  rssAfter: { serveMiB: number; natsMiB: number };
}

/** `n` clients connecting at once through the callout of an enforce-mode serve. */
export async function benchStorm(n: number): Promise<StormResult> {
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce"] });
  const conns: NatsConnection[] = [];
  try {
    const ids = Array.from({ length: n }, (_, i) => generateIdentity(`storm-${i}`));
    await registerUsers(s.dataDir, ids, "scale");
    const rssBefore = { serveMiB: rssMiB(s.child.pid), natsMiB: rssMiB(s.natsPid) };
    const times: number[] = [];
    const t0 = performance.now();
    const settled = await Promise.allSettled(ids.map(async (id) => {
      const nc = await natsLogin(s.natsPort, id);
      times.push(performance.now() - t0);
      conns.push(nc);
      return nc;
    }));
    const allConnectedMs = performance.now() - t0;
    const rssAfter = { serveMiB: rssMiB(s.child.pid), natsMiB: rssMiB(s.natsPid) };
    return {
      clients: n,
      connected: settled.filter((r) => r.status === "fulfilled").length,
      denied: settled.filter((r) => r.status === "rejected").length,
      allConnectedMs: Math.round(allConnectedMs),
      perConnect: summarize(times.length ? times : [NaN]),
      rssBefore,
      rssAfter,
    };
  } finally {
    await Promise.allSettled(conns.map((c) => c.close()));
    await s.stop();
  }
}

/** Result of the rooms × members run. */
export interface RoomsResult {
  rooms: number;
  membersPerRoom: number;
  ms: number;
  roomsPerSec: number;
  /** Milliseconds until a room of 10 is ready (created, 9 added, keys sealed). */
  roomReady: Summary;
  connectMember50: Summary;
  connectMember0: Summary;
  serveRssMiB: number;
}

/**
 * `rooms` rooms of 10 members each, made with the client library, admins
 * taking turns so no one hits the rooms-per-user quota; a probe user is
 * added to 50 of them.
 */
export async function benchRooms(rooms: number): Promise<RoomsResult> {
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce"] });
  const clients: UnibusClient[] = [];
  try {
    const pool = Array.from({ length: 20 }, (_, i) => generateIdentity(`pool-${i}`));
    const probe = generateIdentity("probe");
    const idle = generateIdentity("idle");
    await registerUsers(s.dataDir, [...pool, probe, idle], "scale");
    const url = `nats://127.0.0.1:${s.natsPort}`;
    const admins = pool.slice(0, 10);
    for (const id of admins) {
      clients.push(await connect({ natsServers: [url], ctrlUrls: [s.httpUrl], identity: id }));
    }
    const ready: number[] = [];
    const t0 = performance.now();
    for (let r = 0; r < rooms && performance.now() - t0 < DEADLINE_MS; r++) {
      const t = performance.now();
      const admin = clients[r % clients.length];
      // Nine more: the probe in the first 50 rooms, the rest from the pool,
      // added in one pass (addMembers).
      const others = pool.filter((p) => p !== admins[r % admins.length]);
      const members = r < 50 ? [probe, ...others.slice(0, 8)] : others.slice(r % 10, r % 10 + 9);
      await admin.createRoom(`scale.r${r}`, undefined, {
        members: members.map((m) => m.signPubHex),
      });
      ready.push(performance.now() - t);
    }
    const ms = performance.now() - t0;
    const timeConnects = async (id: Identity) => {
      const times: number[] = [];
      for (let i = 0; i < 60; i++) {
        const t = performance.now();
        const nc = await natsLogin(s.natsPort, id);
        if (i >= 10) times.push(performance.now() - t);
        await nc.close();
      }
      return summarize(times);
    };
    return {
      rooms: ready.length,
      membersPerRoom: 10,
      ms: Math.round(ms),
      roomsPerSec: Math.round((ready.length / (ms / 1000)) * 100) / 100,
      roomReady: summarize(ready),
      connectMember50: await timeConnects(probe),
      connectMember0: await timeConnects(idle),
      serveRssMiB: rssMiB(s.child.pid),
    };
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()));
    await s.stop();
  }
}

/** Room ready with N members: one add at a time against one bulk pass. */
export interface RoomReadyResult {
  members: number;
  oneByOneMs: number;
  bulkMs: number;
}

/**
 * Milliseconds until an encrypted room of `sizes[i]` members (creator
 * included) is ready: `addMember` per member against `createRoom` with
 * `members` (one pass, one key), in the same run.
 */
export async function benchRoomReady(sizes: number[]): Promise<RoomReadyResult[]> {
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce"] });
  const clients: UnibusClient[] = [];
  try {
    const most = Math.max(...sizes);
    const ids = Array.from({ length: most }, (_, i) => generateIdentity(`ready-${i}`));
    await registerUsers(s.dataDir, ids, "scale");
    const url = `nats://127.0.0.1:${s.natsPort}`;
    const admin = await connect({ natsServers: [url], ctrlUrls: [s.httpUrl], identity: ids[0] });
    clients.push(admin);
    // Warm-up, not counted: the first room of a process pays for JIT and
    // connections (it made the smallest room look slower than the next).
    await admin.createRoom("ready.warm", undefined, { members: [ids[1].signPubHex] });
    const out: RoomReadyResult[] = [];
    for (const n of sizes) {
      const members = ids.slice(1, n).map((id) => id.signPubHex);
      let t = performance.now();
      const room = await admin.createRoom(`ready.one.${n}`);
      for (const m of members) await admin.addMember(room, m);
      const oneByOneMs = performance.now() - t;
      t = performance.now();
      await admin.createRoom(`ready.bulk.${n}`, undefined, { members });
      out.push({
        members: n,
        oneByOneMs: Math.round(oneByOneMs),
        bulkMs: Math.round(performance.now() - t),
      });
    }
    return out;
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()));
    await s.stop();
  }
}

function flag(args: string[], name: string, fallback: number): number {
  return Number(args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? fallback);
}

/** Runs the three scale measurements with the counts given in `args`. */
export async function benchScale(args: string[]) {
  return {
    ready: await benchRoomReady([2, 8, 32]),
    storm: await benchStorm(flag(args, "storm", 1000)),
    rooms: await benchRooms(flag(args, "rooms", 100)),
    history: await benchHistory({
      messages: flag(args, "history-messages", 1_000_000),
      single: flag(args, "history", 100_000),
    }),
  };
}

/**
 * Markdown lines for {@linkcode benchScale}'s result.
 *
 * @example
 * ```ts
 * console.log(scaleReport(await benchScale(Deno.args)).join("\n"));
 * ```
 */
export function scaleReport(r: Awaited<ReturnType<typeof benchScale>>): string[] {
  const { ready, storm, rooms, history } = r;
  return [
    "Room ready (encrypted, created and every member added with its key sealed), ms:",
    "",
    "| members | one addMember each | createRoom with members (one pass) |",
    "|---|---|---|",
    ...ready.map((x) => `| ${x.members} | ${x.oneByOneMs} | ${x.bulkMs} |`),
    "",
    `Connect storm: ${storm.clients} bus clients at once through the callout (enforce):`,
    "",
    "| connected | denied | all connected, ms | per client p50 / p99 ms | serve RSS MiB before → after | nats-server RSS MiB before → after |",
    "|---|---|---|---|---|---|",
    `| ${storm.connected} | ${storm.denied} | ${storm.allConnectedMs} | ${storm.perConnect.p50} / ${storm.perConnect.p99} | ${storm.rssBefore.serveMiB} → ${storm.rssAfter.serveMiB} | ${storm.rssBefore.natsMiB} → ${storm.rssAfter.natsMiB} |`,
    "",
    `Rooms: ${rooms.rooms} rooms × ${rooms.membersPerRoom} members through the client library:`,
    "",
    "| rooms/s | room of 10 ready p50 / p99 ms | connect p50 / p99 ms, member of 50 rooms | member of none | serve RSS MiB |",
    "|---|---|---|---|---|",
    `| ${rooms.roomsPerSec} | ${rooms.roomReady.p50} / ${rooms.roomReady.p99} | ${rooms.connectMember50.p50} / ${rooms.connectMember50.p99} | ${rooms.connectMember0.p50} / ${rooms.connectMember0.p99} | ${rooms.serveRssMiB} |`,
    "",
    ...historyReport(history),
  ];
}

if (import.meta.main) {
  console.log(scaleReport(await benchScale(Deno.args)).join("\n"));
}
