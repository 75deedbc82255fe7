/**
 * Percentiles for benchmark samples.
 *
 * @module
 */

/** Milliseconds at the usual percentiles. */
export interface Summary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/**
 * Summarizes samples (any order).
 *
 * @example
 * ```ts
 * summarize([3, 1, 2]).p50; // 2
 * ```
 */
export function summarize(samples: number[]): Summary {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return {
    n: s.length,
    p50: r(at(0.5)),
    p90: r(at(0.9)),
    p99: r(at(0.99)),
    max: r(s[s.length - 1]),
  };
}

/**
 * "min / median / max" of a few repeated figures, rounded to `digits`.
 *
 * @example
 * ```ts
 * spread([3, 1, 2]); // "1 / 2 / 3"
 * ```
 */
export function spread(values: number[], digits = 0): string {
  const s = [...values].sort((a, b) => a - b);
  const f = (x: number) => digits === 0 ? Math.round(x).toLocaleString("en-US") : x.toFixed(digits);
  return `${f(s[0])} / ${f(s[Math.floor((s.length - 1) / 2)])} / ${f(s[s.length - 1])}`;
}
