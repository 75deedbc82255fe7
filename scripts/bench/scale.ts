/**
 * How costs grow with the work (issue 12, "Scale"), each bounded in count
 * and time so that a 2-core CI-sized machine finishes in a few minutes:
 *
 * - `--storm=N` (1000) bus clients connecting at once through the auth
 *   callout: time until all are connected, denials, serve and nats-server RSS
 *   before and after.
 * - rooms of 2, 8 and 32 members made ready one add at a time and in one
 *   pass (`createRoom` with `members`), in the same run.
 * - `--rooms=R` (1000) rooms × 10 members, each made with one `createRoom`
 *   with its members (one signed change, one sealed key per member), as a
 *   curve at 100, 250, 500 and 1,000 rooms: creation rate, room ready p50/p99,
 *   an admin's session refresh, connect p50/p99 for a member of 50 rooms (the
 *   ACL size) against one of none, serve's and nats-server's RSS.
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

/** Result of the connect storm. */
export interface StormResult {
  clients: number;
  connected: number;
  denied: number;
  /** Why, by error message (an auth error, or a timeout waiting for the callout). */
  deniedBy: Record<string, number>;
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
    const deniedBy: Record<string, number> = {};
    for (const r of settled) {
      if (r.status === "rejected") {
        const why = String((r.reason as Error)?.message ?? r.reason);
        deniedBy[why] = (deniedBy[why] ?? 0) + 1;
      }
    }
    return {
      clients: n,
      connected: settled.filter((r) => r.status === "fulfilled").length,
      denied: settled.filter((r) => r.status === "rejected").length,
      deniedBy,
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

/** The rooms run at one point of its curve (after `rooms` rooms). */
export interface RoomsPoint {
  rooms: number;
  /** Since the start, creation only (the measurements at earlier points excluded). */
  ms: number;
  /** Rooms per second over the stretch since the previous point. */
  roomsPerSec: number;
  /** Milliseconds until a room of 10 is ready, rooms of this stretch. */
  roomReady: Summary;
  /** An admin's `refreshSession()` (a NATS reconnect), holding rooms/admins rooms. */
  refresh: Summary;
  connectMember50: Summary;
  connectMember0: Summary;
  serveRssMiB: number;
  natsRssMiB: number;
}

/** Result of the rooms × members run. */
export interface RoomsResult {
  /** Rooms asked for. */
  target: number;
  /** Rooms made (fewer than `target` if the deadline hit). */
  rooms: number;
  membersPerRoom: number;
  admins: number;
  members: number;
  deadlineHit: boolean;
  points: RoomsPoint[];
}

/** Admins making rooms in turn: 50 each at 1,000 rooms, under the default quota of 100. */
const ROOM_ADMINS = 20;
/** The default rooms-per-user quota (server/limits.ts); above it, the bench raises it by flag. */
const DEFAULT_ROOM_QUOTA = 100;
/** Members, online as plain NATS logins: each in 50 rooms at 1,000 rooms. */
const ROOM_MEMBERS = 180;
/** The rooms run is slower than the others: its own bound. */
const ROOMS_DEADLINE_MS = 600_000;

/**
 * `rooms` rooms of 10 members each, made the way a user would: one
 * `createRoom(subject, policy, { members })` each (one signed change, one
 * sealing pass), by `admins` library clients (default 20) taking turns; while
 * no one makes more than the default rooms-per-user quota (100) serve runs
 * with it, else `--max-rooms-per-user` is raised (`--room-admins=1`: one
 * admin makes them all, with a session refresh per room).
 * The 9 members of a room come round-robin from `ROOM_MEMBERS` users who are
 * all online (plain NATS logins through the callout, so the enforcer re-checks
 * them as rooms change), each ending in 50 rooms; a probe user is one of the
 * nine in the first 50 rooms. At each point of the curve (100, 250, 500,
 * 1,000 and the last) the clock stops while it measures.
 */
export async function benchRooms(rooms: number, adminCount = ROOM_ADMINS): Promise<RoomsResult> {
  const perAdmin = Math.ceil(rooms / adminCount);
  const quota = perAdmin > DEFAULT_ROOM_QUOTA ? ["--max-rooms-per-user", String(perAdmin)] : [];
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce", ...quota] });
  const clients: UnibusClient[] = [];
  const logins: NatsConnection[] = [];
  try {
    const admins = Array.from({ length: adminCount }, (_, i) => generateIdentity(`admin-${i}`));
    const members = Array.from({ length: ROOM_MEMBERS }, (_, i) => generateIdentity(`m-${i}`));
    const probe = generateIdentity("probe");
    const idle = generateIdentity("idle");
    await registerUsers(s.dataDir, [...admins, ...members, probe, idle], "scale");
    const url = `nats://127.0.0.1:${s.natsPort}`;
    for (const id of admins) {
      clients.push(await connect({ natsServers: [url], ctrlUrls: [s.httpUrl], identity: id }));
    }
    for (const id of members) logins.push(await natsLogin(s.natsPort, id));
    const timeConnects = async (id: Identity, n: number) => {
      const times: number[] = [];
      for (let i = 0; i < n + 5; i++) {
        const t = performance.now();
        const nc = await natsLogin(s.natsPort, id);
        if (i >= 5) times.push(performance.now() - t);
        await nc.close();
      }
      return summarize(times);
    };
    const timeRefresh = async (n: number) => {
      const times: number[] = [];
      for (let i = 0; i < n; i++) {
        const t = performance.now();
        await clients[i % clients.length].refreshSession();
        times.push(performance.now() - t);
      }
      return summarize(times);
    };
    const marks = [...new Set([100, 250, 500, 1000, rooms])].filter((m) => m <= rooms)
      .sort((a, b) => a - b);
    const points: RoomsPoint[] = [];
    let ready: number[] = [];
    let creating = 0;
    let sinceMark = 0;
    let made = 0;
    const t0 = performance.now();
    const measure = async () => {
      points.push({
        rooms: made,
        ms: Math.round(creating),
        roomsPerSec: Math.round((ready.length / (sinceMark / 1000)) * 100) / 100,
        roomReady: summarize(ready.length ? ready : [NaN]),
        refresh: await timeRefresh(20),
        connectMember50: await timeConnects(probe, 30),
        connectMember0: await timeConnects(idle, 30),
        serveRssMiB: rssMiB(s.child.pid),
        natsRssMiB: rssMiB(s.natsPid),
      });
      ready = [];
      sinceMark = 0;
    };
    let deadlineHit = false;
    while (made < rooms) {
      if (performance.now() - t0 > ROOMS_DEADLINE_MS) {
        deadlineHit = true;
        break;
      }
      const r = made;
      const nine = Array.from({ length: 9 }, (_, j) => members[(r * 9 + j) % ROOM_MEMBERS]);
      if (r < 50) nine[8] = probe;
      const t = performance.now();
      await clients[r % clients.length].createRoom(`scale.r${r}`, undefined, {
        members: nine.map((m) => m.signPubHex),
      });
      const took = performance.now() - t;
      ready.push(took);
      creating += took;
      sinceMark += took;
      made++;
      if (marks.includes(made)) await measure();
    }
    if (deadlineHit && ready.length > 0) await measure();
    return {
      target: rooms,
      rooms: made,
      membersPerRoom: 10,
      admins: adminCount,
      members: ROOM_MEMBERS,
      deadlineHit,
      points,
    };
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()));
    await Promise.allSettled(logins.map((c) => c.close()));
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
    rooms: await benchRooms(flag(args, "rooms", 1000), flag(args, "room-admins", ROOM_ADMINS)),
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
    `Rooms: ${rooms.rooms} of ${rooms.target} rooms × ${rooms.membersPerRoom} members, one createRoom with members each, ${rooms.admins} admins in turn, ${rooms.members} members online${
      rooms.deadlineHit ? " (deadline hit)" : ""
    }:`,
    "",
    "| rooms | rooms/s since previous | room of 10 ready p50 / p99 ms | admin refresh p50 / p99 ms | connect p50 / p99 ms, member of 50 rooms | member of none | serve RSS MiB | nats-server RSS MiB |",
    "|---|---|---|---|---|---|---|---|",
    ...rooms.points.map((p) =>
      `| ${p.rooms} | ${p.roomsPerSec} | ${p.roomReady.p50} / ${p.roomReady.p99} | ${p.refresh.p50} / ${p.refresh.p99} | ${p.connectMember50.p50} / ${p.connectMember50.p99} | ${p.connectMember0.p50} / ${p.connectMember0.p99} | ${p.serveRssMiB} | ${p.natsRssMiB} |`
    ),
    "",
    ...historyReport(history),
  ];
}

if (import.meta.main) {
  console.log(scaleReport(await benchScale(Deno.args)).join("\n"));
}
