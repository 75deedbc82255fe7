/**
 * What `serve` has started, and how to stop it. Each stage records how to
 * stop what it just started; when a later stage fails, or when serve is told
 * to stop, everything recorded is stopped newest first, so nothing outlives
 * serve (a nats-server child would keep the ports and the data dir) and
 * nothing is stopped while something started after it still uses it.
 *
 * @module
 */

import type { Logger } from "../lib/log.ts";

/** One thing to stop, named for the log when stopping it fails. */
interface StopStep {
  what: string;
  stop: () => void | Promise<void>;
}

/**
 * The stop steps of everything started, in start order.
 *
 * @example
 * ```ts
 * const life = new Lifecycle(log);
 * const nats = await launcher.start(config, child);
 * life.started("nats-server", () => nats.stop());
 * try { … later stages … } catch (err) { await life.stopAll(); throw err; }
 * ```
 */
export class Lifecycle {
  #steps: StopStep[] = [];
  #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Records how to stop `what`, which has just started. */
  started(what: string, stop: () => void | Promise<void>): void {
    this.#steps.push({ what, stop });
  }

  /**
   * Stops everything recorded, newest first. A step that fails is logged and
   * the older ones still run: one stuck connection must not leave the child
   * process or the data dir's lock behind. Each step runs at most once.
   */
  async stopAll(): Promise<void> {
    for (const step of this.#steps.splice(0).reverse()) {
      try {
        await step.stop();
      } catch (err) {
        this.#log.error("shutdown step failed", { step: step.what, error: err });
      }
    }
  }
}

/** SIGINT or SIGTERM, once either arrives. */
export interface StopSignals {
  /** Resolves with the first of SIGINT or SIGTERM. */
  readonly received: Promise<Deno.Signal>;
  /** Stops listening. */
  remove(): void;
}

/**
 * Listens for SIGINT and SIGTERM. Listening from the very start means a
 * signal that arrives during start-up is honoured as soon as start-up ends
 * (or interrupts a wait that allows it), instead of killing serve mid-way
 * with a child left running.
 *
 * @example
 * ```ts
 * const signals = listenForStopSignals();
 * const sig = await signals.received; // "SIGTERM"
 * signals.remove();
 * ```
 */
export function listenForStopSignals(): StopSignals {
  const received = Promise.withResolvers<Deno.Signal>();
  const listeners = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const fn = () => received.resolve(sig);
    Deno.addSignalListener(sig, fn);
    return [sig, fn] as const;
  });
  return {
    received: received.promise,
    remove() {
      for (const [sig, fn] of listeners) Deno.removeSignalListener(sig, fn);
    },
  };
}
