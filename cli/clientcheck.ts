/**
 * `unibus clientcheck`: end-to-end verification with a real identity (seed
 * 004). It connects like any client (nkey on NATS, signed requests on the
 * control plane, TLS pinned with --ca), creates an ephemeral encrypted room
 * on a random subject, and either checks that N messages come back decrypted
 * (golden) or keeps publishing a counter while reporting which node it is
 * attached to (loop), so that stopping a node shows the failover.
 *
 * @module
 */

import { randomBytes } from "node:crypto";
import type { UnibusClient } from "../lib/client/client.ts";
import { MAX_SUBJECT_LENGTH, subjectViolation } from "../lib/grammar.ts";
import { loadIdentity } from "../lib/identity/identity.ts";
import { type OptionTable, parseCommandArgs, renderHelp, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import { checkSeeds, csv } from "./contexts.ts";

const OPTIONS: OptionTable = {
  "identity-file": {
    type: "string",
    valueName: "PATH",
    description: "identity to connect with (required)",
  },
  "nats-seeds": {
    type: "string",
    valueName: "URL,URL",
    description: "NATS URLs of the nodes (required)",
  },
  "ctrl-seeds": {
    type: "string",
    valueName: "URL,URL",
    description: "control-plane URLs of the nodes (required)",
  },
  ca: { type: "string", valueName: "PATH", description: "CA (PEM) pinning TLS on both planes" },
  subject: {
    type: "string",
    valueName: "PREFIX",
    description: "room subject prefix; a random token is appended",
    defaultText: "test.clientcheck",
  },
  mode: {
    type: "string",
    valueName: "golden|loop",
    description: "what to check",
    defaultText: "golden",
  },
  messages: {
    type: "string",
    valueName: "N",
    description: "golden: messages to send",
    defaultText: "5",
  },
  duration: {
    type: "string",
    valueName: "DURATION",
    description: "loop: how long",
    defaultText: "30s",
  },
  interval: {
    type: "string",
    valueName: "DURATION",
    description: "loop: between messages",
    defaultText: "1s",
  },
  timeout: {
    type: "string",
    valueName: "DURATION",
    description: "golden: how long to wait for the echoes",
    defaultText: "15s",
  },
  persist: {
    type: "boolean",
    description:
      "loop: use a persisted room and check afterwards, through history, that nothing was lost",
  },
  json: {
    type: "boolean",
    description: "machine-readable output (JSON lines; the last line is the summary)",
  },
};

/** `clientcheck --help`. */
export const CLIENTCHECK_HELP = renderHelp(
  "unibus clientcheck --identity-file PATH --nats-seeds URLS --ctrl-seeds URLS [options]",
  "Verifies the bus end to end with a real identity: an ephemeral encrypted room, messages out, messages back decrypted.",
  OPTIONS,
);

/**
 * Parses "500ms", "45s", "2m" or a bare number of seconds into milliseconds.
 *
 * @example
 * ```ts
 * parseDuration("1.5s"); // 1500
 * ```
 */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text);
  if (!m) throw new Error(`"${text}" is not a duration (e.g. 500ms, 45s, 2m)`);
  const n = Number(m[1]) * ({ ms: 1, s: 1000, m: 60_000 }[m[2] ?? "s"] ?? 1000);
  if (n <= 0) throw new Error(`"${text}" must be positive`);
  return Math.round(n);
}

/** Validated clientcheck options. */
export interface ClientcheckOptions {
  identityFile: string;
  natsSeeds: string[];
  ctrlSeeds: string[];
  ca: string | null;
  subject: string;
  mode: "golden" | "loop";
  messages: number;
  durationMs: number;
  intervalMs: number;
  timeoutMs: number;
  json: boolean;
  persist: boolean;
}

/**
 * Parses clientcheck's flags; throws {@linkcode UsageError} on mistakes.
 *
 * @example
 * ```ts
 * parseClientcheckArgs(["--identity-file", "a.id", "--nats-seeds", "nats://127.0.0.1:4250", "--ctrl-seeds", "http://127.0.0.1:8470"]);
 * ```
 */
export function parseClientcheckArgs(argv: string[]): ClientcheckOptions & { help: boolean } {
  const { values: v } = parseCommandArgs(argv, OPTIONS, { maxPositionals: 0 });
  const help = v.help === true;
  const str = (k: string) => v[k] as string | undefined;
  const need = (k: string) => {
    const x = str(k);
    if (!x && !help) throw new UsageError(`--${k} is required`);
    return x ?? "";
  };
  const dur = (k: string, def: string) => {
    try {
      return parseDuration(str(k) ?? def);
    } catch (err) {
      throw new UsageError(`--${k}: ${(err as Error).message}`);
    }
  };
  const identityFile = need("identity-file");
  const natsSeeds = csv(need("nats-seeds"));
  const ctrlSeeds = csv(need("ctrl-seeds"));
  const ca = str("ca") ?? null;
  if (!help) checkSeeds(natsSeeds, ctrlSeeds, ca);
  const mode = str("mode") ?? "golden";
  if (mode !== "golden" && mode !== "loop") {
    throw new UsageError(`--mode: "${mode}" is not golden or loop`);
  }
  const messages = Number(str("messages") ?? "5");
  if (!Number.isInteger(messages) || messages < 1 || messages > 100_000) {
    throw new UsageError("--messages must be a whole number from 1 to 100000");
  }
  const subject = str("subject") ?? "test.clientcheck";
  // Checked as the room subject it becomes (a random token is appended), so
  // a prefix the server would refuse fails here, before anything connects.
  const suffix = `.${"0".repeat(16)}`;
  const bad = subjectViolation(`${subject}${suffix}`);
  if (bad) {
    const why = bad.rule === "too_long"
      ? `at most ${MAX_SUBJECT_LENGTH - suffix.length} characters (a token is appended)`
      : bad.message;
    throw new UsageError(`--subject ${JSON.stringify(subject)}: ${why} (rule ${bad.rule})`);
  }
  return {
    help,
    identityFile,
    natsSeeds,
    ctrlSeeds,
    ca,
    subject,
    mode,
    messages,
    durationMs: dur("duration", "30s"),
    intervalMs: dur("interval", "1s"),
    timeoutMs: dur("timeout", "15s"),
    json: v.json === true,
    persist: v.persist === true,
  };
}

/** Runs the check; resolves with the exit status. */
export async function runClientcheck(o: ClientcheckOptions): Promise<number> {
  const out = (human: string, machine: Record<string, unknown>) => {
    console.log(o.json ? JSON.stringify(machine) : human);
  };
  const identity = await loadIdentity(o.identityFile);
  // Loaded here, not at the top: every other command starts without the
  // NATS client and the E2E stack.
  const { connect } = await import("../lib/client/client.ts");
  const client = await connect({
    natsServers: o.natsSeeds,
    ctrlUrls: o.ctrlSeeds,
    identity,
    tls: o.ca ? { caFile: o.ca } : undefined,
    name: "unibus-clientcheck",
  });
  try {
    out(`connected: nats=${client.connectedServer()} ctrl=${client.control.currentUrl}`, {
      event: "connected",
      nats: client.connectedServer(),
      ctrl: client.control.currentUrl,
    });
    const subject = `${o.subject}.${Buffer.from(randomBytes(8)).toString("hex")}`;
    let room;
    try {
      // Ephemeral unless --persist: encrypted and signed, no stream left behind
      // (the room, and with it its stream, is deleted at the end either way).
      room = await client.createRoom(subject, { encrypt: true, sign: true, persist: o.persist });
    } catch (err) {
      throw new Error(`cannot create the test room on ${subject}: ${(err as Error).message}`);
    }
    out(`created E2E room ${room.id} on ${subject} (encrypt, sign, persist=${o.persist})`, {
      event: "room",
      id: room.id,
      subject,
    });
    try {
      return o.mode === "golden"
        ? await golden(client, room.id, o, out)
        : await loop(client, room.id, o, out);
    } finally {
      await client.deleteRoom(room.id).catch(() => {});
    }
  } finally {
    await client.close();
  }
}

type Out = (human: string, machine: Record<string, unknown>) => void;

async function golden(client: UnibusClient, roomId: string, o: ClientcheckOptions, out: Out) {
  const got = new Set<string>();
  const all = Promise.withResolvers<void>();
  const sub = await client.subscribe(roomId, (_meta, data) => {
    got.add(new TextDecoder().decode(data));
    if (got.size >= o.messages) all.resolve();
  });
  const want = Array.from({ length: o.messages }, (_, i) => `clientcheck-${i}`);
  for (const w of want) await client.publish(roomId, w);
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([all.promise, new Promise((r) => timer = setTimeout(r, o.timeoutMs))]);
  clearTimeout(timer);
  sub.unsubscribe();
  const missing = want.filter((w) => !got.has(w));
  const node = client.connectedServer();
  if (missing.length > 0) {
    out(
      `GOLDEN FAIL: ${missing.length}/${o.messages} not received decrypted: ${
        missing.join(", ")
      } (node ${node})`,
      {
        event: "golden",
        ok: false,
        sent: o.messages,
        received: got.size,
        missing,
        node,
        stats: sub.stats,
      },
    );
    return 1;
  }
  out(`GOLDEN OK: all ${o.messages} messages received and decrypted end to end (node ${node})`, {
    event: "golden",
    ok: true,
    sent: o.messages,
    received: got.size,
    missing: [],
    node,
    stats: sub.stats,
  });
  return 0;
}

const LOOP_PREFIX = "clientcheck-loop-";

/**
 * What a loop run saw: counters by sequence number, and the longest time
 * without a delivery (from the first publish to the last check).
 *
 * @example
 * ```ts
 * const t = new LoopTally(Date.now());
 * t.delivered("clientcheck-loop-0", Date.now());
 * t.summary(1, Date.now()); // { sent: 1, received: 1, lost: 0, duplicates: 0, … }
 * ```
 */
export class LoopTally {
  #seen = new Set<number>();
  duplicates = 0;
  #last: number;
  #maxGap = 0;
  constructor(startedAt: number) {
    this.#last = startedAt;
  }
  /** Records one delivery of `text` at `at` (ms); ignores foreign payloads. */
  delivered(text: string, at: number): void {
    if (!text.startsWith(LOOP_PREFIX)) return;
    const n = Number(text.slice(LOOP_PREFIX.length));
    if (!Number.isInteger(n)) return;
    if (this.#seen.has(n)) {
      this.duplicates++;
      return;
    }
    this.#seen.add(n);
    this.#maxGap = Math.max(this.#maxGap, at - this.#last);
    this.#last = at;
  }
  get received(): number {
    return this.#seen.size;
  }
  /** Sequence numbers below `sent` never delivered. */
  missing(sent: number): number[] {
    return Array.from({ length: sent }, (_, i) => i).filter((i) => !this.#seen.has(i));
  }
  summary(sent: number, endedAt: number) {
    return {
      sent,
      received: this.received,
      lost: this.missing(sent).length,
      duplicates: this.duplicates,
      max_gap_ms: Math.round(Math.max(this.#maxGap, endedAt - this.#last)),
    };
  }
}

async function loop(client: UnibusClient, roomId: string, o: ClientcheckOptions, out: Out) {
  const started = Date.now();
  const live = new LoopTally(started);
  const sub = await client.subscribe(
    roomId,
    (_meta, data) => live.delivered(new TextDecoder().decode(data), Date.now()),
  );
  const nodes = new Map<string, number>();
  const end = started + o.durationMs;
  let sent = 0;
  let tick = 0;
  let lastNode: string | null = null;
  while (Date.now() < end) {
    let status = "ok";
    try {
      await client.publish(roomId, `${LOOP_PREFIX}${sent}`);
    } catch (err) {
      status = `error: ${(err as Error).message}`;
    }
    sent++;
    tick++;
    const node = client.connectedServer();
    if (node) nodes.set(node, (nodes.get(node) ?? 0) + 1);
    if (node && lastNode && node !== lastNode) {
      out(`attached to ${node} (was ${lastNode})`, { event: "failover", from: lastNode, to: node });
    }
    lastNode = node ?? lastNode;
    out(
      `t=${tick} sent=${sent} recv=${live.received} up=${client.isConnected()} node=${
        node ?? "-"
      } publish=${status}`,
      {
        event: "tick",
        tick,
        sent,
        received: live.received,
        up: client.isConnected(),
        node,
        publish: status,
      },
    );
    await new Promise((r) => setTimeout(r, o.intervalMs));
  }
  // Let the last messages arrive: bounded, and done as soon as all are in.
  const settle = Date.now() + Math.max(2000, o.intervalMs * 2);
  while (live.received < sent && Date.now() < settle) await new Promise((r) => setTimeout(r, 50));
  sub.unsubscribe();
  let summary = live.summary(sent, Date.now());
  let historyChecked = false;
  if (o.persist) {
    // Sent during a failover, a message may still be on its way into the
    // stream (the client resends until stored): wait for that, bounded.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      client.flush().catch(() => {}),
      new Promise((r) => timer = setTimeout(r, 30_000)),
    ]);
    clearTimeout(timer);
    // What the room kept is the ground truth: a message missed live while
    // failing over but stored is not lost.
    const stored = new LoopTally(started);
    const { messages } = await client.history(roomId);
    for (const m of messages) stored.delivered(new TextDecoder().decode(m.plaintext), started);
    summary = { ...summary, lost: stored.missing(sent).length };
    historyChecked = true;
  }
  const attached = Object.fromEntries(nodes);
  const failover = nodes.size > 1;
  const ok = summary.received > 0 && summary.lost === 0;
  const lines = [
    `loop done: sent=${summary.sent} received=${summary.received} lost=${summary.lost} duplicates=${summary.duplicates} max_gap_ms=${summary.max_gap_ms}${
      historyChecked ? " (lost counted from history)" : ""
    }`,
    ...[...nodes].map(([n, c]) => `  attached to ${n} for ${c} ticks`),
  ];
  if (failover) lines.push(`FAILOVER OBSERVED: attached to ${nodes.size} distinct nodes`);
  lines.push(
    ok
      ? `LOOP OK: kept receiving (received=${summary.received})`
      : summary.received === 0
      ? "LOOP FAIL: received nothing"
      : `LOOP FAIL: ${summary.lost} lost`,
  );
  out(lines.join("\n"), {
    event: "summary",
    ...summary,
    nodes: [...nodes.keys()],
    attached,
    failover,
    history_checked: historyChecked,
    ok,
  });
  return ok ? 0 : 1;
}

/** `unibus clientcheck`. */
export const clientcheckCommand: Command = {
  name: "clientcheck",
  async run(argv) {
    const o = parseClientcheckArgs(argv);
    if (o.help) {
      console.log(CLIENTCHECK_HELP);
      return 0;
    }
    return await runClientcheck(o);
  },
};
