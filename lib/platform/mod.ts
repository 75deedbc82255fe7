/**
 * The few calls that differ between Deno and Node.js, behind one small face,
 * so that the client library (and what it imports) runs on both. Files go
 * through `node:fs`, which both runtimes implement; what is left is here:
 * unref'ing a timer, a fetch that trusts one pinned CA, and telling a missing
 * file apart.
 *
 * @module
 */

/** True under Deno; false under Node.js. */
export const isDeno: boolean = "Deno" in globalThis;

/**
 * Lets the program end while `timer` is still pending (a background resend
 * must not keep a finished program alive).
 *
 * @example
 * ```ts
 * unrefTimer(setInterval(() => {}, 1000));
 * ```
 */
export function unrefTimer(timer: ReturnType<typeof setInterval>): void {
  if (isDeno) {
    Deno.unrefTimer(timer as unknown as number);
    return;
  }
  (timer as unknown as { unref?: () => void }).unref?.();
}

/**
 * Whether `err` says a file or directory does not exist (`ENOENT`), as
 * either runtime spells it.
 *
 * @example
 * ```ts
 * try { await readFile(p); } catch (e) { if (!isNotFound(e)) throw e; }
 * ```
 */
export function isNotFound(err: unknown): boolean {
  if (isDeno && err instanceof Deno.errors.NotFound) return true;
  return (err as { code?: unknown } | null)?.code === "ENOENT";
}

/** A fetch, and how to release what it holds. */
export interface PinnedFetch {
  fetch(url: string, init: RequestInit): Promise<Response>;
  close(): void;
}

/**
 * A fetch that trusts `caCertPem` (in addition to nothing else: a pinned
 * CA), or the runtime's own fetch and its system roots when `caCertPem` is
 * undefined. Deno: `Deno.createHttpClient`. Node.js: an `undici` agent
 * (loaded only there).
 *
 * @example
 * ```ts
 * const http = await pinnedFetch(await Deno.readTextFile("ca.crt"));
 * const res = await http.fetch("https://127.0.0.1:8470/healthz", {});
 * http.close();
 * ```
 */
export async function pinnedFetch(caCertPem: string | undefined): Promise<PinnedFetch> {
  if (caCertPem === undefined) return { fetch: (u, i) => fetch(u, i), close: () => {} };
  if (isDeno) {
    const client = Deno.createHttpClient({ caCerts: [caCertPem] });
    return {
      fetch: (u, i) => fetch(u, { ...i, client } as RequestInit),
      close: () => client.close(),
    };
  }
  const undici = await import("undici");
  const agent = new undici.Agent({ connect: { ca: caCertPem } });
  return {
    fetch: (u, i) =>
      undici.fetch(
        u,
        { ...i, dispatcher: agent } as Parameters<typeof undici.fetch>[1],
      ) as unknown as Promise<
        Response
      >,
    close: () => void agent.close(),
  };
}

/**
 * The error a missing file raises in this runtime (`Deno.errors.NotFound`
 * under Deno, an `ENOENT` error under Node.js), for code that finds a file
 * missing by other means than the runtime's own call.
 *
 * @example
 * ```ts
 * throw notFoundError("state.json: no such file");
 * ```
 */
export function notFoundError(message: string): Error {
  if (isDeno) return new Deno.errors.NotFound(message);
  return Object.assign(new Error(message), { code: "ENOENT" });
}

/** A promise with its resolve and reject, as `Promise.withResolvers` gives one. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(reason?: unknown): void;
}

/**
 * `Promise.withResolvers()`, which Node.js 20 does not have (22 does).
 *
 * @example
 * ```ts
 * const ready = deferred<void>();
 * setTimeout(() => ready.resolve(), 10);
 * await ready.promise;
 * ```
 */
export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason?: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
