/**
 * Waiting on a condition in tests. A fixed sleep followed by an exact check
 * passes or fails with the machine's load, and a poll that simply stops at
 * its deadline lets the test go on as if the condition had held; this waits
 * for the condition itself and fails, naming it, when the deadline passes.
 *
 * @module
 */

/** How long {@linkcode waitFor} waits and what it says when it gives up. */
export interface WaitOptions {
  /** The deadline, in ms from the call (default 5000). */
  timeoutMs?: number;
  /** What is awaited, for the error: "bob's connection to close". */
  what: string;
  /** Pause between polls, in ms (default 20). */
  intervalMs?: number;
}

/** Thrown by {@linkcode waitFor} at its deadline. */
export class WaitTimeoutError extends Error {
  override name = "WaitTimeoutError";
}

/**
 * Resolves with the first truthy value `condition` returns, polling until
 * `timeoutMs`; then throws {@linkcode WaitTimeoutError} naming `what` (and the
 * last error the condition threw, if any). The condition may be async; an
 * exception from it counts as "not yet".
 *
 * @example
 * ```ts
 * await waitFor(() => sub.stats.replayed === 1, { what: "the replay to be counted" });
 * const view = await waitFor(async () => (await fetchRoom()).epoch === 2 && "ok", {
 *   timeoutMs: 3000,
 *   what: "epoch 2",
 * });
 * ```
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  opts: WaitOptions,
): Promise<Exclude<T, false | 0 | "" | null | undefined>> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const interval = opts.intervalMs ?? 20;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  // Bounded by time; at least one check even with a zero timeout.
  while (true) {
    try {
      const v = await condition();
      if (v) return v as Exclude<T, false | 0 | "" | null | undefined>;
      lastError = null;
    } catch (err) {
      lastError = err;
    }
    const left = deadline - Date.now();
    if (left <= 0) break;
    await new Promise((r) => setTimeout(r, Math.min(interval, left)));
  }
  const cause = lastError ? ` (last error: ${(lastError as Error)?.message ?? lastError})` : "";
  throw new WaitTimeoutError(`timed out after ${timeoutMs} ms waiting for ${opts.what}${cause}`);
}
