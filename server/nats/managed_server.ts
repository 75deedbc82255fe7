/**
 * nats-server as a supervised child process: start it, wait until it serves,
 * restart it with backoff when it dies, stop it on shutdown.
 *
 * @module
 */

import { RouteDialLog } from "./route_log.ts";
import type { Logger } from "../../lib/log.ts";

/** How to run the child. */
export interface ManagedNatsOptions {
  binary: string;
  configPath: string;
  /** Where clients reach it; used for the readiness probe. */
  host: string;
  port: number;
  /** Forward only nats-server's warnings and errors (see log_options.ts). */
  quiet: boolean;
  /** How long one start may take before it is reported as failed. */
  readyTimeoutMs?: number;
  log: Logger;
}

/** Thrown when nats-server does not come up; the message carries its last output. */
export class NatsStartError extends Error {
  override name = "NatsStartError";
}

const TAIL_LINES = 40;
const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];
// A child that ran this long before dying starts the backoff over.
const STABLE_MS = 30_000;

/**
 * One nats-server child and its supervisor.
 *
 * @example
 * ```ts
 * const nats = new ManagedNatsServer({ binary, configPath, host: "127.0.0.1", port: 4250, quiet: true, log });
 * await nats.start();   // resolves once the server accepts connections
 * // … later
 * await nats.stop();
 * ```
 */
export class ManagedNatsServer {
  #opts: ManagedNatsOptions;
  #child: Deno.ChildProcess | null = null;
  #tail: string[] = [];
  #readyLine = false;
  #stopping = false;
  #restarts = 0;
  /** Why the running child is being stopped on purpose, for supervision to say so. */
  #restartReason: string | null = null;
  #supervisor: Promise<void> | null = null;
  #routes: RouteDialLog;

  constructor(opts: ManagedNatsOptions) {
    this.#opts = opts;
    this.#routes = new RouteDialLog(opts.log);
  }

  /** The running child's pid, or null between restarts. */
  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  /** How many times the child was restarted after dying. */
  get restarts(): number {
    return this.#restarts;
  }

  /** nats-server's most recent output lines, oldest first. */
  get lastLines(): string[] {
    return [...this.#tail];
  }

  // What to quote when the child fails: its errors if it printed any (the
  // start-up banner before them is noise), else its last lines.
  #failureLines(): string {
    const lines = this.#tail.map((l) => l.replace(/^\[\d+\]\s*/, ""));
    const errors = lines.filter((l) => /^\[(FTL|ERR)\]/.test(l));
    return (errors.length > 0 ? errors.slice(-5) : lines.slice(-10)).join("\n") || "(nothing)";
  }

  /** Starts the child, waits until it serves, then supervises it. */
  async start(): Promise<void> {
    const child = await this.#spawnReady();
    this.#supervisor = this.#supervise(child);
  }

  /** Stops supervision and the child: SIGTERM, then SIGKILL after ten seconds. */
  async stop(): Promise<void> {
    this.#stopping = true;
    const child = this.#child;
    if (child) await terminate(child, 10_000);
    await this.#supervisor;
    this.#routes.close();
  }

  /**
   * Stops the child (SIGTERM, SIGKILL after ten seconds) and lets supervision
   * start it again at once, logging `reason`; nothing happens while stopping.
   *
   * @example
   * ```ts
   * await nats.restart("left out of the JetStream meta group");
   * ```
   */
  async restart(reason: string): Promise<void> {
    const child = this.#child;
    if (!child || this.#stopping) return;
    this.#restartReason = reason;
    await terminate(child, 10_000);
  }

  /**
   * Puts the child in lame duck mode (SIGUSR2, what `nats-server --signal
   * ldm` sends) and waits until it has closed its clients and exited;
   * supervision ends first, so the exit is not taken for a crash. Bounded:
   * past `boundMs`, or as soon as `cutShort` settles (a second SIGTERM or
   * SIGINT to serve), the child is stopped at once: SIGINT (nats-server
   * ignores SIGTERM while in lame duck), then SIGKILL after ten seconds.
   *
   * @example
   * ```ts
   * const how = await nats.lameDuck(45_000, secondSignal);
   * // "drained" | "cut short" | "timed out" | "not running"
   * await nats.stop(); // nothing left to stop; ends the supervisor
   * ```
   */
  async lameDuck(
    boundMs: number,
    cutShort: Promise<unknown>,
  ): Promise<"drained" | "cut short" | "timed out" | "not running"> {
    this.#stopping = true;
    const child = this.#child;
    if (!child) return "not running";
    try {
      child.kill("SIGUSR2");
    } catch {
      return "not running";
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const how = await Promise.race([
      child.status.then(() => "drained" as const),
      cutShort.then(() => "cut short" as const, () => "cut short" as const),
      new Promise<"timed out">((r) => timer = setTimeout(() => r("timed out"), boundMs)),
    ]);
    clearTimeout(timer);
    if (how !== "drained") await terminate(child, 10_000, "SIGINT");
    return how;
  }

  async #spawnReady(): Promise<Deno.ChildProcess> {
    const { binary, configPath, log } = this.#opts;
    this.#readyLine = false;
    const child = new Deno.Command(binary, {
      args: ["-c", configPath],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    log.info("nats-server started", { pid: child.pid, binary });
    this.#pump(child.stdout);
    this.#pump(child.stderr);
    try {
      await this.#waitReady(child);
    } catch (err) {
      await terminate(child, 2000);
      this.#child = null;
      throw err;
    }
    log.info("nats-server ready", { pid: child.pid, port: this.#opts.port });
    return child;
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    let buf = "";
    try {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          this.#line(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
        }
      }
    } catch { /* the child went away mid-read */ }
    if (buf) this.#line(buf);
  }

  #line(raw: string): void {
    const line = raw.trimEnd();
    if (!line) return;
    this.#tail.push(line);
    if (this.#tail.length > TAIL_LINES) this.#tail.shift();
    if (line.includes("Server is ready")) this.#readyLine = true;
    const severity = /\[(FTL|ERR|WRN|INF|DBG|TRC)\]/.exec(line)?.[1] ?? "INF";
    const { log, quiet } = this.#opts;
    const text = line.replace(/^\[\d+\]\s*/, "");
    // Route dial failures repeat every second while a peer is down: said once per change.
    if (this.#routes.consume(text)) return;
    if (severity === "FTL" || severity === "ERR") log.error(text);
    else if (severity === "WRN") log.warn(text);
    else if (!quiet) log.info(text);
  }

  async #waitReady(child: Deno.ChildProcess): Promise<void> {
    const timeout = this.#opts.readyTimeoutMs ?? 15_000;
    const deadline = Date.now() + timeout;
    const seen: { exited: Deno.CommandStatus | null } = { exited: null };
    child.status.then((s) => seen.exited = s);
    const probeHost = this.#opts.host === "0.0.0.0"
      ? "127.0.0.1"
      : this.#opts.host === "::"
      ? "::1"
      : this.#opts.host;
    while (Date.now() < deadline) {
      const exited = seen.exited;
      if (exited !== null) {
        // Let the pumps drain the last lines before quoting them.
        await new Promise((r) => setTimeout(r, 50));
        throw new NatsStartError(
          `nats-server exited during start (code ${exited.code}${
            exited.signal ? `, ${exited.signal}` : ""
          }); its last output:\n${this.#failureLines()}`,
        );
      }
      // The "ready" line proves the listener is this child's, not a stranger
      // already holding the port; the dial proves it accepts connections.
      if (this.#readyLine && await canDial(probeHost, this.#opts.port)) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new NatsStartError(
      `nats-server did not accept connections on ${this.#opts.host}:${this.#opts.port} within ${timeout} ms; its last output:\n${this.#failureLines()}`,
    );
  }

  async #supervise(first: Deno.ChildProcess): Promise<void> {
    let child: Deno.ChildProcess | null = first;
    let attempt = 0;
    while (!this.#stopping) {
      const startedAt = Date.now();
      const status: Deno.CommandStatus | null = child ? await child.status : null;
      if (this.#stopping) return;
      this.#child = null;
      const requested = this.#restartReason;
      this.#restartReason = null;
      if (requested !== null) {
        this.#opts.log.warn("nats-server stopped on purpose; restarting", { reason: requested });
      } else if (status) {
        if (Date.now() - startedAt > STABLE_MS) attempt = 0;
        this.#opts.log.error("nats-server exited unexpectedly; restarting", {
          code: status.code,
          signal: status.signal,
          lastLines: this.#tail.slice(-5),
        });
      }
      const delay = requested !== null ? 0 : BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
      if (requested === null) attempt++;
      await new Promise((r) => setTimeout(r, delay));
      if (this.#stopping) return;
      try {
        child = await this.#spawnReady();
        this.#restarts++;
        this.#opts.log.info("nats-server restarted", { restarts: this.#restarts });
      } catch (err) {
        child = null;
        this.#opts.log.error("nats-server restart failed", { error: err, retryInMs: delay });
      }
    }
  }
}

async function canDial(hostname: string, port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname, port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

async function terminate(
  child: Deno.ChildProcess,
  graceMs: number,
  signal: Deno.Signal = "SIGTERM",
): Promise<void> {
  try {
    child.kill(signal);
  } catch { /* already exited */ }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = await Promise.race([
    child.status.then(() => false),
    new Promise<boolean>((r) => timer = setTimeout(() => r(true), graceMs)),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    try {
      child.kill("SIGKILL");
    } catch { /* exited meanwhile */ }
    await child.status;
  }
}
