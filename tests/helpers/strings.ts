/**
 * Generated strings for property-style tests of the input grammar: a seeded
 * PRNG (so a failure names a case that can be replayed) composing pieces that
 * have broken stores and ACLs before: NUL and other controls, lone
 * surrogates, astral characters, U+2603, dots, wildcards, reserved prefixes
 * and strings around the length limits.
 *
 * @module
 */

/**
 * A deterministic PRNG (mulberry32): the same seed gives the same sequence.
 *
 * @example
 * ```ts
 * const next = seededRandom(1);
 * next(); // a number in [0, 1)
 * ```
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Most pieces are harmless, so that many generated strings are valid and the
// accepted side of each rule is exercised as much as the refused one.
const SAFE = ["chat", "ops", "a", "Z9", "-", ".", "~", "snow"];
const HOSTILE = [
  "..",
  "*",
  ">",
  "$",
  "$SYS",
  "_",
  "_INBOX",
  " ",
  "\t",
  "\n",
  "\r",
  "\u0000",
  "\u0001",
  "\u001b",
  "\u007f",
  "\u0085",
  "\u00a0",
  "\u00e9",
  "\u00ff",
  "\u0100",
  "\u2603",
  "\u2028",
  "\ufeff",
  "\ufffd",
  "\ud800",
  "\udfff",
  "\u{1f600}",
  "\u{10ffff}",
  "~",
  "%00",
  "\\",
  '"',
];

/**
 * The cases every run includes, then `count` generated ones (the first
 * `count / 10` or so are long: around 255 and 64 Ki characters).
 *
 * @example
 * ```ts
 * for (const s of generatedStrings(7, 100)) store.tryAll(s);
 * ```
 */
export function generatedStrings(seed: number, count: number): string[] {
  const next = seededRandom(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)];
  const out = [
    "chat.ops",
    "chat.ops\u0000x",
    "\u0000x",
    "chat.\u2603",
    "snow \u2603",
    "\u{1f600}",
    "a\ud800b",
    "x".repeat(255),
    "x".repeat(256),
    "y".repeat(64 * 1024),
    "y".repeat(64 * 1024 + 1),
  ];
  for (let i = 0; i < count; i++) {
    const piece = () => next() < 0.85 ? pick(SAFE) : pick(HOSTILE);
    if (next() < 0.1) {
      const len = pick([254, 255, 256, 65535, 65536, 65537]);
      out.push(piece().repeat(len).slice(0, len) + (next() < 0.5 ? "" : piece()));
      continue;
    }
    const parts = 1 + Math.floor(next() * 6);
    let s = "";
    for (let j = 0; j < parts; j++) s += piece();
    out.push(s);
  }
  return out;
}
