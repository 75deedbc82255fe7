/**
 * One-at-a-time per key within this process: the lock the room service and
 * the HTTP routes share.
 *
 * @module
 */

/**
 * Runs async functions one at a time per key, in arrival order. Serialising
 * the read-verify-write of one room (or one user's key) in this process
 * keeps its derived tables from being written by two requests at once; the
 * store's compare-and-set still guards against other processes.
 *
 * @example
 * ```ts
 * const locks = new KeyedLock();
 * await locks.run(roomId, async () => { ... });
 * ```
 */
export class KeyedLock {
  #tails = new Map<string, Promise<unknown>>();

  /**
   * Runs `fn` after every earlier `run` with the same key has settled.
   *
   * @example
   * ```ts
   * await new KeyedLock().run("room", () => Promise.resolve(1)); // 1
   * ```
   */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    const mine = prev.catch(() => {}).then(fn);
    const tail = mine.catch(() => {});
    this.#tails.set(key, tail);
    try {
      return await mine;
    } finally {
      // Drop the entry once nothing queued after us, so the map stays small.
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}
