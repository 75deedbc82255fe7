/**
 * `deno task bench`: unibus against raw NATS, measured side by side in one
 * run on this machine. Prints a Markdown report (paste it into
 * docs/benchmarks.md) and, with --json, the raw figures.
 *
 * @module
 */

import { installConnectionResetGuard } from "../../lib/nats/connection_reset_guard.ts";
import { benchConnect } from "./connect.ts";

installConnectionResetGuard();
const json = Deno.args.includes("--json");
const n = Number(Deno.args.find((a) => a.startsWith("--connects="))?.split("=")[1] ?? 500);

const connects = await benchConnect(n);
const cpu = (await Deno.readTextFile("/proc/cpuinfo")).match(/model name\s*:\s*(.*)/)?.[1] ?? "?";
if (json) {
  console.log(JSON.stringify({ cpu, cores: navigator.hardwareConcurrency, connects }, null, 2));
} else {
  const row = (name: string, s: typeof connects.auth) =>
    `| ${name} | ${s.n} | ${s.p50} | ${s.p90} | ${s.p99} | ${s.max} |`;
  console.log(
    [
      `Machine: ${cpu}, ${navigator.hardwareConcurrency} cores; Deno ${Deno.version.deno}.`,
      "",
      "Connect (TCP + INFO + CONNECT + PING/PONG, then close), milliseconds:",
      "",
      "| connect | n | p50 | p90 | p99 | max |",
      "|---|---|---|---|---|---|",
      row("enforce: nkey + auth callout", connects.auth),
      row("auth off (no credentials)", connects.noAuth),
    ].join("\n"),
  );
}
