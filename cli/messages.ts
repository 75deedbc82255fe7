/**
 * `unibus send`, `listen`, `request`, `respond` and `history`: a room's
 * messages from the shell, with the client library's guarantees (every
 * message sealed and signed by the sender's identity, every received one
 * verified; a refused packet is counted on stderr, never printed as if
 * genuine).
 *
 * @module
 */

import type { FrameMeta, RoomStats, UnibusClient } from "../lib/client/client.ts";
import { type OptionTable, parseCommandArgs, renderHelp, UsageError } from "./args.ts";
import { toBase64 } from "../lib/e2e/bytes.ts";
import { handleCache, TARGET_OPTIONS, textOf, withClient } from "./bus_target.ts";
import { parseDuration } from "./clientcheck.ts";
import type { Command } from "./command.ts";

type Values = Record<string, string | boolean | undefined>;

const JSON_OPTION: OptionTable = { json: { type: "boolean", description: "print JSON" } };

function str(v: Values, k: string): string | undefined {
  return typeof v[k] === "string" ? v[k] as string : undefined;
}

function wholeNumber(v: Values, k: string, max: number): number | undefined {
  const s = str(v, k);
  if (s === undefined) return undefined;
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < 0 || n > max) {
    throw new UsageError(`--${k} must be a whole number from 0 to ${max}`);
  }
  return n;
}

function duration(v: Values, k: string, fallback?: string): number | undefined {
  const s = str(v, k) ?? fallback;
  if (s === undefined) return undefined;
  try {
    return parseDuration(s);
  } catch (err) {
    throw new UsageError(`--${k}: ${(err as Error).message}`);
  }
}

/**
 * The flags and positionals of one of these commands; null when `--help`
 * was asked for (its help is printed then).
 */
function commandArgs(
  argv: string[],
  table: OptionTable,
  maxPositionals: number,
  usage: string,
  summary: string,
): { values: Values; positionals: string[] } | null {
  const parsed = parseCommandArgs(argv, table, { maxPositionals });
  if (parsed.values.help) {
    console.log(renderHelp(usage, summary, table));
    return null;
  }
  return parsed;
}

/** Refused packets, as counted by the library: one line on stderr when there were any. */
function reportRefused(what: string, stats: RoomStats): void {
  const refused = stats.replayed + stats.nonMember + stats.invalid + stats.noKey + stats.version;
  if (refused === 0) return;
  console.error(
    `unibus ${what}: refused ${refused} packet(s) (replayed ${stats.replayed}, not a member ` +
      `${stats.nonMember}, invalid ${stats.invalid}, no key ${stats.noKey}, other version ` +
      `${stats.version}); none was printed`,
  );
}

/** One received message as `listen` and `history` print it. */
async function render(
  meta: FrameMeta,
  data: Uint8Array,
  handles: (k: string) => Promise<string | null>,
  json: boolean,
): Promise<string> {
  const handle = await handles(meta.sender);
  const text = textOf(data);
  if (!json) {
    return `[${meta.subject}] ${handle ?? meta.sender.slice(0, 12)}: ${
      text ?? `<${data.length} bytes>`
    }`;
  }
  return JSON.stringify({
    room: meta.roomId,
    subject: meta.subject,
    sender: meta.sender,
    handle,
    time: meta.sentAt === null ? null : new Date(meta.sentAt).toISOString(),
    seq: meta.seq,
    ...(text !== null ? { text } : { data_b64: toBase64(data) }),
  });
}

// ---- send ----

const SEND_OPTIONS: OptionTable = {
  ...TARGET_OPTIONS,
  raw: { type: "boolean", description: "all of stdin is one message (else one per line)" },
};

async function* stdinLines(): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of Deno.stdin.readable) {
    buffered += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, nl).replace(/\r$/, "");
      buffered = buffered.slice(nl + 1);
    }
  }
  buffered += decoder.decode();
  if (buffered !== "") yield buffered;
}

async function readAll(): Promise<Uint8Array> {
  return new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
}

/** `unibus send ROOM [TEXT]`. */
export const sendCommand: Command = {
  name: "send",
  async run(argv) {
    const args = commandArgs(
      argv,
      SEND_OPTIONS,
      2,
      "unibus send ROOM [TEXT] [options]",
      "With TEXT, sends one message; without, each line of stdin is one message, sent as it " +
        "is read (tail -f log | unibus send ops.alerts). Exits 0 once every message was handed " +
        "to NATS (a persisted room's, acknowledged by its stream).",
    );
    if (args === null) return 0;
    const { values: v, positionals } = args;
    const [room, text] = positionals;
    if (!room) throw new UsageError("send needs a ROOM (subject or id)");
    return await withClient(v, async (c) => {
      await c.room(room);
      let sent = 0;
      if (text !== undefined) {
        await c.publish(room, text);
        sent = 1;
      } else if (v.raw) {
        await c.publish(room, await readAll());
        sent = 1;
      } else {
        // Each line goes out as it is read; the library batches what is
        // published in one tick, so lines are not awaited one by one (a
        // window of them at most, so that a failure stops the loop soon).
        let window: Promise<void>[] = [];
        for await (const line of stdinLines()) {
          window.push(c.publish(room, line));
          sent++;
          if (window.length >= 1024) {
            await Promise.all(window);
            window = [];
          }
        }
        await Promise.all(window);
      }
      await c.flush();
      console.error(`sent ${sent} message(s) to ${room}`);
      return 0;
    });
  },
};

// ---- listen ----

const LISTEN_OPTIONS: OptionTable = {
  ...TARGET_OPTIONS,
  count: { type: "string", valueName: "N", description: "stop after N messages" },
  timeout: { type: "string", valueName: "DURATION", description: "stop after this long" },
  history: {
    type: "string",
    valueName: "N",
    description: "first the last N stored messages of a persisted room",
  },
  ...JSON_OPTION,
};

/**
 * Lines to stdout in batches: one write per turn of the event loop instead
 * of one per message (a write per line capped `listen` at a few thousand
 * messages a second).
 */
class LineWriter {
  #lines: string[] = [];
  #writing: Promise<void> = Promise.resolve();
  #scheduled = false;
  #encoder = new TextEncoder();

  write(line: string): void {
    this.#lines.push(line);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setTimeout(() => {
      this.#scheduled = false;
      this.#writing = this.#writing.then(() => this.#drain());
    }, 0);
  }

  async #drain(): Promise<void> {
    if (this.#lines.length === 0) return;
    const bytes = this.#encoder.encode(this.#lines.join("\n") + "\n");
    this.#lines = [];
    for (let off = 0; off < bytes.length;) off += await Deno.stdout.write(bytes.subarray(off));
  }

  async flush(): Promise<void> {
    await this.#writing;
    await this.#drain();
  }
}

/** A frame's identity: the same frame live and from history is printed once. */
function frameKey(meta: FrameMeta): string {
  return `${meta.roomId}:${meta.sender}:${meta.session}:${meta.index}`;
}

async function listen(c: UnibusClient, rooms: string[], v: Values): Promise<number> {
  const count = wholeNumber(v, "count", Number.MAX_SAFE_INTEGER);
  const timeoutMs = duration(v, "timeout");
  const historyN = wholeNumber(v, "history", 100_000) ?? 0;
  const json = v.json === true;
  const handles = handleCache(c);
  const done = Promise.withResolvers<void>();
  let received = 0;
  const printed = new Set<string>();
  // Live messages wait here while history is printed, so that the seam has
  // neither a gap (subscribed before history is read) nor a duplicate
  // (a frame already printed from history is skipped).
  let held: Array<{ meta: FrameMeta; data: Uint8Array }> | null = historyN > 0 ? [] : null;
  let out: Promise<void> = Promise.resolve();
  const stdout = new LineWriter();
  const print = (meta: FrameMeta, data: Uint8Array) => {
    if (count !== undefined && received >= count) return;
    const key = frameKey(meta);
    if (printed.has(key)) return;
    printed.add(key);
    received++;
    out = out.then(async () => stdout.write(await render(meta, data, handles, json)));
    if (count !== undefined && received >= count) done.resolve();
  };
  const subs = [];
  for (const room of rooms) {
    subs.push(
      await c.subscribe(room, (meta, data) => held ? held.push({ meta, data }) : print(meta, data)),
    );
  }
  console.error("ready");
  if (held) {
    for (const room of rooms) {
      const session = await c.room(room);
      if (!session.state.policy.persist) continue;
      const { messages, stats } = await c.history(room, { last: historyN });
      for (const m of messages) print(m.meta, m.plaintext);
      reportRefused("listen (history)", stats);
    }
    const live = held;
    held = null;
    for (const m of live) print(m.meta, m.data);
  }
  const stop = () => done.resolve();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  const timer = timeoutMs !== undefined ? setTimeout(stop, timeoutMs) : undefined;
  try {
    if (count === undefined || received < count) await done.promise;
  } finally {
    clearTimeout(timer);
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
    for (const s of subs) s.unsubscribe();
  }
  await out;
  await stdout.flush();
  for (const s of subs) reportRefused("listen", s.stats);
  return timeoutMs !== undefined && received === 0 ? 1 : 0;
}

/** `unibus listen ROOM…`. */
export const listenCommand: Command = {
  name: "listen",
  async run(argv) {
    const args = commandArgs(
      argv,
      LISTEN_OPTIONS,
      64,
      "unibus listen ROOM… [options]",
      "Prints each message as it arrives ('[subject] handle: text', or one JSON object a " +
        "line with --json). Writes 'ready' to stderr once subscribed. Stops on SIGINT/SIGTERM, " +
        "--count or --timeout (exit 1 if --timeout passed with nothing received).",
    );
    if (args === null) return 0;
    const { values: v, positionals } = args;
    if (positionals.length === 0) throw new UsageError("listen needs at least one ROOM");
    return await withClient(v, (c) => listen(c, positionals, v));
  },
};

// ---- request / respond ----

const REQUEST_OPTIONS: OptionTable = {
  ...TARGET_OPTIONS,
  timeout: {
    type: "string",
    valueName: "DURATION",
    description: "how long to wait",
    defaultText: "5s",
  },
  ...JSON_OPTION,
};

/** `unibus request ROOM TEXT`. */
export const requestCommand: Command = {
  name: "request",
  async run(argv) {
    const args = commandArgs(
      argv,
      REQUEST_OPTIONS,
      2,
      "unibus request ROOM TEXT [options]",
      "Sends TEXT as a request; prints the first member's reply.",
    );
    if (args === null) return 0;
    const { values: v, positionals } = args;
    const [room, text] = positionals;
    if (!room || text === undefined) throw new UsageError("request needs a ROOM and a TEXT");
    const timeoutMs = duration(v, "timeout", "5s")!;
    return await withClient(v, async (c) => {
      const { meta, plaintext } = await c.request(room, text, { timeoutMs });
      const handle = await handleCache(c)(meta.sender);
      const body = textOf(plaintext);
      if (v.json) {
        console.log(JSON.stringify({
          ...(body !== null ? { text: body } : { data_b64: toBase64(plaintext) }),
          responder: meta.sender,
          handle,
        }));
      } else {
        console.log(body ?? `<${plaintext.length} bytes>`);
      }
      return 0;
    });
  },
};

const RESPOND_OPTIONS: OptionTable = {
  ...TARGET_OPTIONS,
  exec: {
    type: "string",
    valueName: "'CMD ARGS'",
    description: "run by sh for each request: the request on stdin, the reply its stdout",
  },
  echo: { type: "boolean", description: "reply with the request itself" },
  timeout: {
    type: "string",
    valueName: "DURATION",
    description: "--exec: how long one command may run",
    defaultText: "30s",
  },
  parallel: {
    type: "string",
    valueName: "N",
    description: "requests handled at once at most",
    defaultText: "8",
  },
  count: { type: "string", valueName: "N", description: "stop after answering N requests" },
};

/** What a failed --exec replies, so that the requester sees it failed. */
function execFailure(what: string): Uint8Array {
  return new TextEncoder().encode(`error: ${what}`);
}

async function runExec(cmd: string, input: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
  const child = new Deno.Command("sh", {
    args: ["-c", cmd],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already ended */ }
  }, timeoutMs);
  try {
    const writer = child.stdin.getWriter();
    await writer.write(input).catch(() => {}); // a command that reads nothing closes early
    await writer.close().catch(() => {});
    const out = await child.output();
    if (out.signal === "SIGKILL") return execFailure(`timed out after ${timeoutMs} ms`);
    if (!out.success) {
      const why = new TextDecoder().decode(out.stderr).split("\n")[0];
      return execFailure(`exit status ${out.code}${why ? `: ${why}` : ""}`);
    }
    return out.stdout;
  } finally {
    clearTimeout(timer);
  }
}

async function respond(c: UnibusClient, room: string, v: Values): Promise<number> {
  const cmd = str(v, "exec");
  const timeoutMs = duration(v, "timeout", "30s")!;
  const parallel = Math.max(1, wholeNumber(v, "parallel", 256) ?? 8);
  const count = wholeNumber(v, "count", Number.MAX_SAFE_INTEGER);
  const done = Promise.withResolvers<void>();
  let running = 0;
  let answered = 0;
  let busy = 0;
  const sub = await c.subscribe(room, (meta, data) => {
    if (!meta.reply) return;
    if (running >= parallel) {
      // Bounded: a flood of requests never starts a flood of processes.
      busy++;
      c.respond(room, meta, execFailure("busy, try again")).catch(() => {});
      return;
    }
    running++;
    (async () => {
      const reply = cmd === undefined ? data : await runExec(cmd, data, timeoutMs);
      await c.respond(room, meta, reply);
      answered++;
      if (count !== undefined && answered >= count) done.resolve();
    })().catch((err) => console.error(`unibus respond: a reply failed: ${err.message}`))
      .finally(() => running--);
  });
  console.error("ready");
  const stop = () => done.resolve();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  try {
    await done.promise;
  } finally {
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
    sub.unsubscribe();
  }
  await c.flush();
  reportRefused("respond", sub.stats);
  console.error(`answered ${answered} request(s)${busy ? `, ${busy} refused as busy` : ""}`);
  return 0;
}

/** `unibus respond ROOM --exec CMD | --echo`. */
export const respondCommand: Command = {
  name: "respond",
  async run(argv) {
    const args = commandArgs(
      argv,
      RESPOND_OPTIONS,
      1,
      "unibus respond ROOM (--exec 'CMD ARGS' | --echo) [options]",
      "Answers each request in ROOM: --exec runs CMD (by sh) with the request on stdin and " +
        "replies with its stdout (a failure or timeout replies 'error: …'); --echo replies " +
        "with the request. Writes 'ready' to stderr once subscribed; stops on SIGINT/SIGTERM.",
    );
    if (args === null) return 0;
    const { values: v, positionals } = args;
    const [room] = positionals;
    if (!room) throw new UsageError("respond needs a ROOM");
    if ((str(v, "exec") === undefined) === (v.echo !== true)) {
      throw new UsageError("respond needs exactly one of --exec and --echo");
    }
    return await withClient(v, (c) => respond(c, room, v));
  },
};

// ---- history ----

const HISTORY_OPTIONS: OptionTable = {
  ...TARGET_OPTIONS,
  limit: { type: "string", valueName: "N", description: "the last N messages only" },
  ...JSON_OPTION,
};

/** `unibus history ROOM`. */
export const historyCommand: Command = {
  name: "history",
  async run(argv) {
    const args = commandArgs(
      argv,
      HISTORY_OPTIONS,
      1,
      "unibus history ROOM [options]",
      "Prints a persisted room's stored messages, oldest first, each verified.",
    );
    if (args === null) return 0;
    const { values: v, positionals } = args;
    const [room] = positionals;
    if (!room) throw new UsageError("history needs a ROOM");
    const limit = wholeNumber(v, "limit", 1_000_000);
    return await withClient(v, async (c) => {
      const session = await c.room(room);
      if (!session.state.policy.persist) {
        throw new Error(`room ${room} is not persisted: it keeps no history`);
      }
      const handles = handleCache(c);
      const { messages, stats } = await c.history(room, { last: limit });
      for (const m of messages) {
        console.log(await render(m.meta, m.plaintext, handles, v.json === true));
      }
      reportRefused("history", stats);
      return 0;
    });
  },
};
