/**
 * `deno task bench`: unibus against raw NATS, measured side by side in one
 * run on this machine. Prints a Markdown report (paste it into
 * docs/benchmarks.md) and, with --json, the raw figures.
 *
 * @module
 */

import { installConnectionResetGuard } from "../../lib/nats/connection_reset_guard.ts";
import { benchConnect } from "./connect.ts";
import { benchControlPlane, controlPlaneTable } from "./control_plane.ts";
import { benchE2E } from "./e2e.ts";
import { benchUploadFlood } from "./upload_flood.ts";

installConnectionResetGuard();
const json = Deno.args.includes("--json");
const arg = (name: string, d: number) =>
  Number(Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? d);
const n = arg("connects", 500);
const count = arg("messages", 200_000);
const pings = arg("pings", 2000);
const cpu = (await Deno.readTextFile("/proc/cpuinfo")).match(/model name\s*:\s*(.*)/)?.[1] ?? "?";
const machine =
  `Machine: ${cpu}, ${navigator.hardwareConcurrency} cores; Deno ${Deno.version.deno}; ` +
  `load average at start ${(await Deno.readTextFile("/proc/loadavg")).split(" ")[0]}.`;

// The control-plane comparison (SQLite vs KV) first: `--only=control-plane`
// runs it alone.
const controlPlane = await benchControlPlane({
  requests: arg("cp-requests", 200),
  connects: arg("cp-connects", 200),
  revokes: arg("cp-revokes", 10),
  repeat: arg("cp-repeat", 3),
});
if (Deno.args.includes("--only=control-plane")) {
  console.log(
    json
      ? JSON.stringify({ cpu, controlPlane }, null, 2)
      : `${machine}\n\n${controlPlaneTable(controlPlane)}`,
  );
  Deno.exit(0);
}
const connects = await benchConnect(n);
const e2e = await benchE2E(count, pings);
const flood = await benchUploadFlood(arg("flood", 40), 5);
if (json) {
  console.log(
    JSON.stringify(
      { cpu, cores: navigator.hardwareConcurrency, connects, e2e, flood, controlPlane },
      null,
      2,
    ),
  );
} else {
  const row = (name: string, s: typeof connects.auth) =>
    `| ${name} | ${s.n} | ${s.p50} | ${s.p90} | ${s.p99} | ${s.max} |`;
  console.log(
    [
      machine,
      "",
      controlPlaneTable(controlPlane),
      "",
      "Connect (TCP + INFO + CONNECT + PING/PONG, then close), milliseconds:",
      "",
      "| connect | n | p50 | p90 | p99 | max |",
      "|---|---|---|---|---|---|",
      row("enforce: nkey + auth callout", connects.auth),
      row("auth off (no credentials)", connects.noAuth),
      "",
      `Publish → subscribe, 256-byte payloads, ${count} messages, publisher and subscriber in separate processes:`,
      "",
      "| path | received | msgs/s |",
      "|---|---|---|",
      `| raw nats.js | ${e2e.raw.received} | ${e2e.raw.msgsPerSec} |`,
      `| unibus E2E room (encrypted + signed) | ${e2e.e2e.received} | ${e2e.e2e.msgsPerSec} |`,
      `| ratio raw : E2E | | 1 : ${(e2e.raw.msgsPerSec / e2e.e2e.msgsPerSec).toFixed(1)} |`,
      "",
      `Round trip (request → echo → reply), 256-byte payloads, ${pings} round trips, milliseconds:`,
      "",
      "| path | p50 | p90 | p99 | max |",
      "|---|---|---|---|---|",
      `| raw nats.js request/reply | ${e2e.rawLat.p50} | ${e2e.rawLat.p90} | ${e2e.rawLat.p99} | ${e2e.rawLat.max} |`,
      `| unibus E2E room request/respond | ${e2e.e2eLat.p50} | ${e2e.e2eLat.p90} | ${e2e.e2eLat.p99} | ${e2e.e2eLat.max} |`,
      "",
      `Upload flood: ${flood.rounds} rounds of ${flood.parallel} parallel 8 MiB uploads with bad signatures naming a registered key:`,
      "",
      "| serve RSS before MiB | peak MiB | answers | ms |",
      "|---|---|---|---|",
      `| ${flood.rssBeforeMiB} | ${flood.rssPeakMiB} | ${
        Object.entries(flood.answers).map(([k, v]) => `${k}: ${v}`).join(", ")
      } | ${flood.ms} |`,
    ].join("\n"),
  );
}
