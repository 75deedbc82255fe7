/**
 * The top self-time entries of a V8 CPU profile (`deno run --cpu-prof`, or
 * UNIBUS_BENCH_CPU_PROF=<dir> for the bench workers), as Markdown rows:
 *
 *   deno run -A scripts/bench/profile_top.ts <file.cpuprofile> [top=12]
 *
 * @module
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/** Self-time share per function (name and file), highest first. */
export function topSelf(
  profile: { nodes: ProfileNode[]; samples: number[] },
  top = 12,
): Array<{ fn: string; share: number }> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const counts = new Map<string, number>();
  for (const id of profile.samples) {
    const f = byId.get(id)!.callFrame;
    const file = f.url.split("/").slice(-2).join("/");
    const key = `${f.functionName || "(anonymous)"} ${file}${file ? `:${f.lineNumber + 1}` : ""}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const total = profile.samples.length;
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([fn, c]) => ({
    fn,
    share: Math.round((1000 * c) / total) / 10,
  }));
}

if (import.meta.main) {
  const [file, top] = Deno.args;
  const rows = topSelf(JSON.parse(await Deno.readTextFile(file)), Number(top ?? 12));
  for (const r of rows) console.log(`| ${r.fn} | ${r.share}% |`);
}
