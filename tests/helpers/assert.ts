/**
 * The few assertions the tests use. Deno's @std/assert lives on JSR, which
 * these machines cannot reach, and node:assert's messages are less useful for
 * structured values; these are small enough to own.
 *
 * @module
 */

/** Thrown by a failed assertion. */
export class AssertionError extends Error {
  override name = "AssertionError";
}

/**
 * Fails unless `cond` is truthy.
 *
 * @example
 * ```ts
 * assert(1 + 1 === 2, "arithmetic");
 * ```
 */
export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new AssertionError(msg);
}

function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, val) => {
    if (val instanceof Uint8Array) return { bytes: Array.from(val) };
    if (val && typeof val === "object" && !Array.isArray(val)) {
      return Object.fromEntries(Object.entries(val).sort(([a], [b]) => a < b ? -1 : 1));
    }
    return val;
  });
}

/**
 * Fails unless `actual` and `expected` are deeply equal (JSON-comparable
 * values and Uint8Arrays).
 *
 * @example
 * ```ts
 * assertEquals({ a: 1 }, { a: 1 });
 * ```
 */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  const a = canonical(actual);
  const e = canonical(expected);
  if (a !== e) {
    throw new AssertionError(`${msg ? msg + ": " : ""}expected ${e}, got ${a}`);
  }
}

/**
 * Fails unless `text` matches `re`.
 *
 * @example
 * ```ts
 * assertMatch("abc", /b/);
 * ```
 */
export function assertMatch(text: string, re: RegExp, msg?: string): void {
  if (!re.test(text)) {
    throw new AssertionError(
      `${msg ? msg + ": " : ""}${JSON.stringify(text)} does not match ${re}`,
    );
  }
}

/**
 * Resolves with the error `fn` rejects with, failing if it does not reject or
 * rejects with another class.
 *
 * @example
 * ```ts
 * const err = await assertRejects(() => Promise.reject(new TypeError("x")), TypeError);
 * ```
 */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  cls: new (...args: any[]) => E,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (err) {
    if (!(err instanceof cls)) {
      throw new AssertionError(`expected ${cls.name}, got ${(err as Error)?.name}: ${err}`);
    }
    if (includes && !err.message.includes(includes)) {
      throw new AssertionError(`expected message to include "${includes}", got "${err.message}"`);
    }
    return err;
  }
  throw new AssertionError(`expected ${cls.name}, but nothing was thrown`);
}

/**
 * Fails unless `fn` throws an instance of `cls`; returns the error.
 *
 * @example
 * ```ts
 * assertThrows(() => JSON.parse("{"), SyntaxError);
 * ```
 */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  cls: new (...args: any[]) => E,
  includes?: string,
): E {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof cls)) {
      throw new AssertionError(`expected ${cls.name}, got ${(err as Error)?.name}: ${err}`);
    }
    if (includes && !err.message.includes(includes)) {
      throw new AssertionError(`expected message to include "${includes}", got "${err.message}"`);
    }
    return err;
  }
  throw new AssertionError(`expected ${cls.name}, but nothing was thrown`);
}
