/**
 * History at scale (issue 12, "A persisted room with 1,000,000 messages"):
 * one serve whose room streams may hold 1 GiB (`--room-stream-max-bytes`),
 * three persisted encrypted rooms of 64-byte messages, published as the
 * client packs them (every message of one tick in one packet):
 *
 * - `--history-messages=N` (1 000 000) messages, 256 a tick (the most a
 *   packet takes),
 * - `--history=N` (100 000) messages 16 a tick, and as many one a tick (one
 *   packet each), so the per-entry cost is visible,
 *
 * each read back with `readHistory` from the start and from the middle
 * (msg/s, plaintext and stored MB/s, the reader's peak RSS), plus the fill
 * rate, the stored bytes per message and per entry, and bare direct gets (no
 * verification): nats.js's getMessage one at a time (history before) and
 * with a window in flight, against history_reader.ts's directGets.
 * Every loop is bounded by its count and by {@linkcode HISTORY_DEADLINE_MS}.
 *
 * @module
 */

import process from "node:process";
import { connect as natsConnect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { inboxPrefixFor, roomStreamName } from "../../lib/auth/acl.ts";
import { connect, type UnibusClient } from "../../lib/client/client.ts";
import { directGets, HISTORY_GETS_IN_FLIGHT } from "../../lib/client/history_reader.ts";
import { nkeyAuthenticatorFor } from "../../lib/auth/nkey.ts";
import { generateIdentity, loadIdentity } from "../../lib/identity/identity.ts";
import { accountUser } from "../../server/nats/account_users.ts";
import { startServe } from "../../tests/helpers/serve_process.ts";
import { natsLogin, registerUsers } from "./users.ts";

/** Each fill and each read stops here, whatever its count. */
export const HISTORY_DEADLINE_MS = 300_000;

const MiB = 1024 * 1024;
const PAYLOAD_BYTES = 64;
const ROOM_STREAM_BYTES = 1024 * MiB;

/** One read of a room's history. */
export interface HistoryRead {
  startSeq: number;
  entries: number;
  messages: number;
  ms: number;
  msgsPerSec: number;
  /** Plaintext delivered, MB (10^6 bytes) per second. */
  plainMBps: number;
  /** Stored bytes read (entries × the room's average entry), MB per second. */
  storedMBps: number;
  /** The reading process's CPU time (user + system) per message, µs: steadier than msg/s on a shared machine. */
  cpuUsPerMsg: number;
  /** The reading process's RSS when the read starts, and its largest during it, MiB. */
  rssStartMiB: number;
  peakRssMiB: number;
}

/** One room: how it was filled, what it stores, how fast it reads. */
export interface HistoryRoom {
  /** Messages published in one tick (so sealed into one packet). */
  perPacket: number;
  messages: number;
  entries: number;
  storedBytes: number;
  bytesPerMessage: number;
  bytesPerEntry: number;
  fillMs: number;
  fillMsgsPerSec: number;
  fromStart: HistoryRead;
  fromMiddle: HistoryRead;
}

/** The history bench's result. */
export interface HistoryResult {
  roomStreamMaxBytes: number;
  payloadBytes: number;
  /** The packed room, then the smaller ones: 16 messages a packet, then 1. */
  rooms: HistoryRoom[];
  /** Bare direct gets of the 1-a-packet room's entries: one at a time, then pipelined. */
  directGets: {
    entries: number;
    serialPerSec: number;
    requestsPerSec: number;
    pipelinedPerSec: number;
    inFlight: number;
  };
}

const rssNowMiB = () => Math.round(Deno.memoryUsage().rss / MiB);
const perSec = (n: number, ms: number) => Math.round(n / (ms / 1000));

async function fill(
  client: UnibusClient,
  room: { id: string },
  n: number,
  perPacket: number,
): Promise<{ sent: number; ms: number }> {
  const payload = new Uint8Array(PAYLOAD_BYTES).fill(7);
  const t0 = performance.now();
  let sent = 0;
  let sinceFlush = 0;
  while (sent < n && performance.now() - t0 < HISTORY_DEADLINE_MS) {
    // One tick's publishes: the client seals them into one packet; awaited,
    // so the next ones are the next tick's.
    const k = Math.min(perPacket, n - sent);
    const tick: Array<Promise<void>> = [];
    for (let i = 0; i < k; i++) tick.push(client.publish(room, payload));
    await Promise.all(tick);
    sent += k;
    // Waits for the stream's acks now and then: what is unacknowledged
    // stays bounded (the durable publisher holds it for resending).
    if (++sinceFlush >= 1000) {
      await client.flush();
      sinceFlush = 0;
    }
  }
  await client.flush();
  return { sent, ms: performance.now() - t0 };
}

async function read(
  client: UnibusClient,
  room: { id: string },
  startSeq: number,
  lastSeq: number,
  bytesPerEntry: number,
): Promise<HistoryRead> {
  const t = performance.now();
  let messages = 0;
  let plain = 0;
  const rssStart = rssNowMiB();
  const cpu0 = process.cpuUsage();
  let peak = rssStart;
  const { messages: stream } = await client.readHistory(room, { startSeq });
  for await (const m of stream) {
    messages++;
    plain += m.plaintext.length;
    if (messages % 10_000 === 0) {
      peak = Math.max(peak, rssNowMiB());
      if (performance.now() - t > HISTORY_DEADLINE_MS) break;
    }
  }
  const ms = performance.now() - t;
  const cpu = process.cpuUsage(cpu0);
  const entries = lastSeq - startSeq + 1;
  return {
    startSeq,
    entries,
    messages,
    ms: Math.round(ms),
    msgsPerSec: perSec(messages, ms),
    plainMBps: Math.round(plain / 1e6 / (ms / 1000) * 10) / 10,
    storedMBps: Math.round(entries * bytesPerEntry / 1e6 / (ms / 1000) * 10) / 10,
    cpuUsPerMsg: Math.round((cpu.user + cpu.system) / Math.max(1, messages) * 10) / 10,
    rssStartMiB: rssStart,
    peakRssMiB: Math.max(peak, rssNowMiB()),
  };
}

/**
 * Fills the rooms and reads them back: `messages` into the room packed as
 * the client packs a busy tick (256 a packet), `single` into one with 16 a
 * packet and one with 1 a packet.
 *
 * @example
 * ```ts
 * const r = await benchHistory({ messages: 1_000_000, single: 100_000 });
 * console.log(historyReport(r).join("\n"));
 * ```
 */
export async function benchHistory(
  counts: { messages: number; single: number },
): Promise<HistoryResult> {
  const idDir = await Deno.makeTempDir({ prefix: "unibus-bench-id-" });
  const internalIdFile = `${idDir}/internal.id`;
  const s = await startServe({
    extraArgs: [
      "--bus-auth",
      "enforce",
      "--internal-id-file",
      internalIdFile,
      "--room-stream-max-bytes",
      `${ROOM_STREAM_BYTES / MiB}MiB`,
      "--jetstream-max-store",
      "4GiB",
    ],
  });
  const clients: UnibusClient[] = [];
  const conns: NatsConnection[] = [];
  try {
    const [a, b] = [generateIdentity("hist-a"), generateIdentity("hist-b")];
    await registerUsers(s.dataDir, [a, b], "history");
    const url = `nats://127.0.0.1:${s.natsPort}`;
    const ca = await connect({ natsServers: [url], ctrlUrls: [s.httpUrl], identity: a });
    clients.push(ca);
    // Both rooms with Bob in them before Bob connects: NATS fixes a
    // connection's permissions when it connects.
    const rooms: Record<string, { id: string }> = {};
    const plan = [
      { subject: "history.p256", n: counts.messages, perPacket: 256 },
      { subject: "history.p16", n: counts.single, perPacket: 16 },
      { subject: "history.p1", n: counts.single, perPacket: 1 },
    ];
    for (const { subject } of plan) {
      rooms[subject] = await ca.createRoom(subject, { encrypt: true, sign: true, persist: true });
      await ca.addMember(rooms[subject], b.signPubHex);
    }
    const cb = await connect({ natsServers: [url], ctrlUrls: [s.httpUrl], identity: b });
    clients.push(cb);
    // Bob's own connection, for what his ACL allows on the stream: bare
    // direct gets. The streams' state is read in the rooms' account.
    const nb = await natsLogin(s.natsPort, b);
    conns.push(nb);
    const jsm = await jetstreamManager(nb, { checkAPI: false });
    const roomsNc = await natsConnect({
      servers: url,
      authenticator: nkeyAuthenticatorFor(
        accountUser((await loadIdentity(internalIdFile)).signSeed, "rooms"),
      ),
    });
    conns.push(roomsNc);
    const streamsJsm = await jetstreamManager(roomsNc, { checkAPI: false });

    const one = async (subject: string, n: number, perPacket: number): Promise<HistoryRoom> => {
      const room = rooms[subject];
      const { sent, ms } = await fill(ca, room, n, perPacket);
      const { state } = await streamsJsm.streams.info(roomStreamName(room.id));
      const bytesPerEntry = state.bytes / Math.max(1, state.messages);
      const middle = state.first_seq + Math.floor(state.messages / 2);
      return {
        perPacket,
        messages: sent,
        entries: state.messages,
        storedBytes: state.bytes,
        bytesPerMessage: Math.round(state.bytes / Math.max(1, sent) * 10) / 10,
        bytesPerEntry: Math.round(bytesPerEntry),
        fillMs: Math.round(ms),
        fillMsgsPerSec: perSec(sent, ms),
        fromStart: await read(cb, room, state.first_seq, state.last_seq, bytesPerEntry),
        fromMiddle: await read(cb, room, middle, state.last_seq, bytesPerEntry),
      };
    };
    const results: HistoryRoom[] = [];
    for (const { subject, n, perPacket } of plan) results.push(await one(subject, n, perPacket));

    // The transport alone: bare direct gets over the 1-a-packet room's entries.
    const stream = roomStreamName(rooms["history.p1"].id);
    const { state } = await streamsJsm.streams.info(stream);
    const k = Math.min(state.messages, 20_000);
    const last = state.first_seq + k - 1;
    const timed = async (run: () => Promise<void>) => {
      const t = performance.now();
      await run();
      return perSec(k, performance.now() - t);
    };
    // What history did before: nats.js's getMessage, one at a time.
    const serialPerSec = await timed(async () => {
      const t = performance.now();
      for (let seq = state.first_seq; seq <= last; seq++) {
        await jsm.direct.getMessage(stream, { seq });
        if (performance.now() - t > HISTORY_DEADLINE_MS) throw new Error("deadline");
      }
    });
    // nats.js's getMessage with a window of gets in flight.
    const requestsPerSec = await timed(async () => {
      const queue: Array<Promise<unknown>> = [];
      for (let seq = state.first_seq; seq <= last; seq++) {
        queue.push(jsm.direct.getMessage(stream, { seq }));
        if (queue.length >= HISTORY_GETS_IN_FLIGHT) await queue.shift();
      }
      await Promise.all(queue);
    });
    // history_reader.ts's directGets (what readHistory uses).
    const inboxPrefix = inboxPrefixFor(b.signPubHex);
    let got = 0;
    const pipelinedPerSec = await timed(async () => {
      const gets = directGets(nb, { stream, from: state.first_seq, to: last, inboxPrefix });
      for await (const _ of gets) got++;
    });
    if (got !== k) throw new Error(`directGets read ${got} of ${k} entries`);

    return {
      roomStreamMaxBytes: ROOM_STREAM_BYTES,
      payloadBytes: PAYLOAD_BYTES,
      rooms: results,
      directGets: {
        entries: k,
        serialPerSec,
        requestsPerSec,
        pipelinedPerSec,
        inFlight: HISTORY_GETS_IN_FLIGHT,
      },
    };
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()));
    await Promise.allSettled(conns.map((c) => c.close()));
    await s.stop();
    await Deno.remove(idDir, { recursive: true });
  }
}

/**
 * Markdown lines for {@linkcode benchHistory}'s result.
 *
 * @example
 * ```ts
 * console.log(historyReport(await benchHistory({ messages: 10_000, single: 1000 })).join("\n"));
 * ```
 */
export function historyReport(r: HistoryResult): string[] {
  const rooms = r.rooms;
  return [
    `History: persisted encrypted rooms, ${r.payloadBytes}-byte messages, serve with ` +
    `--room-stream-max-bytes ${
      r.roomStreamMaxBytes / MiB
    }MiB; read with readHistory (verified, decrypted):`,
    "",
    "| messages a packet | messages | stream entries | stored bytes / message | / entry | fill msg/s (s) |",
    "|---|---|---|---|---|---|",
    ...rooms.map((x) =>
      `| ${x.perPacket} | ${x.messages} | ${x.entries} | ${x.bytesPerMessage} | ${x.bytesPerEntry} | ${x.fillMsgsPerSec} (${
        Math.round(x.fillMs / 100) / 10
      }) |`
    ),
    "",
    "| messages a packet | read from | entries | messages | s | msg/s | plaintext MB/s | stored MB/s | reader CPU µs / message | reader RSS MiB, start → peak |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ...rooms.flatMap((x) =>
      [["the start", x.fromStart], ["the middle", x.fromMiddle]].map(([where, v]) => {
        const h = v as HistoryRead;
        return `| ${x.perPacket} | ${where} | ${h.entries} | ${h.messages} | ${
          Math.round(h.ms / 100) / 10
        } | ${h.msgsPerSec} | ${h.plainMBps} | ${h.storedMBps} | ${h.cpuUsPerMsg} | ${h.rssStartMiB} → ${h.peakRssMiB} |`;
      })
    ),
    "",
    `Bare direct gets (no verification), ${r.directGets.entries} entries of the 1-a-packet room: ` +
    `nats.js getMessage one at a time (history before) ${r.directGets.serialPerSec}/s, ` +
    `${r.directGets.inFlight} in flight ${r.directGets.requestsPerSec}/s; ` +
    `directGets (history now, ${r.directGets.inFlight} in flight) ${r.directGets.pipelinedPerSec}/s.`,
    "",
  ];
}
