/**
 * `deno task bench`: unibus against raw NATS, measured side by side in one
 * run on this machine. Prints a Markdown report (paste it into
 * docs/benchmarks.md) and, with --json, the raw figures.
 *
 * Options: --only=backup,callout,cluster,cluster-connect,cluster-e2e,cold-start,connect,
 * control-plane,e2e,flood,history,primitives,python,ready,scale,shell,sync (default all but cluster,
 * cluster-connect, cluster-e2e, cold-start, python, scale, shell, sync and backup; backup:
 * --backup-users=N (default 1000), --backup-rooms=N (200), --backup-blobs=N (200, 64 KiB each); python:
 * --py-messages=N (default 5000), --py-round-trips=N (default 300); cold-start:
 * --cold-starts=N (default 20), --cold-at-once=K (default 2); shell: --shell-lines=N, default 10000; cluster-connect: --cluster-connects=N, default 200; cluster: --kills=N, default 3; sync: --sync-packets,
 * --sync-writes, --sync-repeat), --repeat=N (E2E, room-ready and
 * cluster-e2e runs, reported as min / median / max),
 * --sizes=256,1024,16384, --connects, --messages, --pings, --flood and the
 * scale options of scripts/bench/scale.ts; --cp-requests, --cp-connects,
 * --cp-revokes, --cp-repeat for the control plane (SQLite vs KV);
 * --baseline=<dir> (another checkout) adds its enforce-mode serves to the
 * connect rotation, and its own cluster to cluster-connect's.
 *
 * @module
 */

import { benchSync, syncTable } from "./sync.ts";
import { installConnectionResetGuard } from "../../lib/nats/connection_reset_guard.ts";
import { benchCalloutStages } from "./callout_stages.ts";
import { benchCluster } from "./cluster.ts";
import { benchClusterConnect } from "./cluster_connect.ts";
import { benchClusterE2E } from "./cluster_e2e.ts";
import { benchConnect } from "./connect.ts";
import { benchControlPlane, controlPlaneTable } from "./control_plane.ts";
import { benchE2E } from "./e2e.ts";
import { benchHistory, historyReport } from "./history.ts";
import { benchPrimitives } from "./primitives.ts";
import { benchRoomReady, benchScale, scaleReport } from "./scale.ts";
import { benchShell } from "./shell.ts";
import { benchPython, PYTHON_SIZES } from "./python.ts";
import { benchBackup } from "./backup.ts";
import { benchColdStart } from "./cold_start.ts";
import { spread } from "./stats.ts";
import { benchUploadFlood } from "./upload_flood.ts";

installConnectionResetGuard();
const flag = (name: string, fallback: string) =>
  Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? fallback;
const json = Deno.args.includes("--json");
const only = new Set(
  flag("only", "callout,connect,control-plane,e2e,flood,primitives,ready").split(","),
);
const n = Number(flag("connects", "500"));
const count = Number(flag("messages", "200000"));
const pings = Number(flag("pings", "2000"));
const repeat = Math.min(10, Math.max(1, Number(flag("repeat", "3"))));
const sizes = flag("sizes", "256,1024,16384").split(",").map(Number);
const floodParallel = Number(flag("flood", "40"));

const cpu = (await Deno.readTextFile("/proc/cpuinfo")).match(/model name\s*:\s*(.*)/)?.[1] ?? "?";
const out: string[] = [
  `Machine: ${cpu}, ${navigator.hardwareConcurrency} cores; Deno ${Deno.version.deno}; ` +
  `load average at start ${(await Deno.readTextFile("/proc/loadavg")).split(" ")[0]}.`,
  "",
];
const results: Record<string, unknown> = { cpu, cores: navigator.hardwareConcurrency };

if (only.has("primitives")) {
  const prims = await benchPrimitives();
  results.primitives = prims;
  out.push("Primitives, one process, µs per call (median of 5 rounds):", "");
  out.push("| operation | µs |", "|---|---|");
  for (const p of prims) out.push(`| ${p.name} | ${p.usPerOp} |`);
  out.push("");
}

if (only.has("callout")) {
  const stages = await benchCalloutStages(2000);
  results.callout = stages;
  out.push("The callout's stages, one process, SQLite store, µs (2000 each):", "");
  out.push("| stage | p50 | p99 |", "|---|---|---|");
  for (const s of stages) out.push(`| ${s.stage} | ${s.us.p50} | ${s.us.p99} |`);
  out.push("");
}

if (only.has("connect")) {
  const baseline = flag("baseline", "");
  const connects = await benchConnect(n, baseline ? { baseline } : {});
  results.connects = connects;
  const row = (name: string, s: typeof connects.auth) =>
    `| ${name} | ${s.n} | ${s.p50} | ${s.p90} | ${s.p99} | ${s.max} |`;
  out.push(
    "Connect (TCP + INFO + CONNECT + PING/PONG, then close), the modes interleaved, milliseconds:",
    "",
    "| connect | n | p50 | p90 | p99 | max |",
    "|---|---|---|---|---|---|",
    row("enforce: nkey + auth callout, SQLite store", connects.auth),
    row("enforce: nkey + auth callout, KV store", connects.authKv),
    row("auth off (no credentials)", connects.noAuth),
    ...(connects.baseline
      ? [
        row(`baseline ${baseline}: enforce, SQLite store`, connects.baseline.auth),
        row(`baseline ${baseline}: enforce, KV store`, connects.baseline.authKv),
      ]
      : []),
    "",
  );
}

if (only.has("e2e")) {
  const runs: Array<Awaited<ReturnType<typeof benchE2E>>> = [];
  for (let i = 0; i < repeat; i++) runs.push(await benchE2E(count, pings, sizes));
  results.e2e = runs;
  out.push(
    `Publish → subscribe, publisher and subscriber in separate processes, ${repeat} runs (min / median / max; raw and E2E of a run measured back to back):`,
    "",
    "| payload | raw msgs/s | E2E msgs/s | raw MB/s | E2E MB/s | E2E : raw |",
    "|---|---|---|---|---|---|",
  );
  sizes.forEach((size, s) => {
    const raw = runs.map((r) => r.tput[s].raw);
    const e2e = runs.map((r) => r.tput[s].e2e);
    const ratio = runs.map((r) => r.tput[s].e2e.msgsPerSec / r.tput[s].raw.msgsPerSec);
    out.push(
      `| ${size} B | ${spread(raw.map((t) => t.msgsPerSec))} | ${
        spread(e2e.map((t) => t.msgsPerSec))
      } | ${spread(raw.map((t) => t.mbPerSec))} | ${spread(e2e.map((t) => t.mbPerSec))} | ${
        spread(ratio, 2)
      } |`,
    );
  });
  out.push(
    "",
    "CPU ms per MB of payload (median of runs): publisher, subscriber, nats-server; the three share the machine's cores:",
    "",
    "| payload | raw pub | raw sub | raw nats | E2E pub | E2E sub | E2E nats |",
    "|---|---|---|---|---|---|---|",
  );
  sizes.forEach((size, s) => {
    const cell = (side: "raw" | "e2e", k: "pub" | "sub" | "nats") => {
      const v = runs.map((r) => r.tput[s][side].cpuMsPerMB?.[k]).filter((x) => x !== undefined)
        .sort((a, b) => a - b);
      return v.length ? String(v[Math.floor(v.length / 2)]) : "—";
    };
    out.push(
      `| ${size} B | ${cell("raw", "pub")} | ${cell("raw", "sub")} | ${cell("raw", "nats")} | ${
        cell("e2e", "pub")
      } | ${cell("e2e", "sub")} | ${cell("e2e", "nats")} |`,
    );
  });
  const lost = runs.flatMap((r) => r.tput).filter((t) => t.e2e.received < t.e2e.sent);
  if (lost.length > 0) out.push("", `(${lost.length} E2E runs received fewer than sent)`);
  out.push(
    "",
    `Round trip (request → echo → reply), 256-byte payloads, ${pings} round trips per run, ms (min / median / max over ${repeat} runs):`,
    "",
    "| path | p50 | p90 | p99 |",
    "|---|---|---|---|",
    `| raw nats.js request/reply | ${spread(runs.map((r) => r.rawLat.p50), 3)} | ${
      spread(runs.map((r) => r.rawLat.p90), 3)
    } | ${spread(runs.map((r) => r.rawLat.p99), 3)} |`,
    `| unibus E2E room request/respond | ${spread(runs.map((r) => r.e2eLat.p50), 3)} | ${
      spread(runs.map((r) => r.e2eLat.p90), 3)
    } | ${spread(runs.map((r) => r.e2eLat.p99), 3)} |`,
    `| E2E − raw, p50 | ${spread(runs.map((r) => r.e2eLat.p50 - r.rawLat.p50), 3)} | | ${
      spread(runs.map((r) => r.e2eLat.p99 / r.rawLat.p99), 2)
    } (p99 ratio) |`,
    "",
  );
}

if (only.has("ready")) {
  const runs: Array<Awaited<ReturnType<typeof benchRoomReady>>> = [];
  for (let i = 0; i < repeat; i++) runs.push(await benchRoomReady([2, 8, 32]));
  results.ready = runs;
  out.push(
    `Room ready (encrypted; created, every member added, its key sealed), ms, ${repeat} runs (min / median / max):`,
    "",
    "| members | one addMember each | createRoom with members (one change) |",
    "|---|---|---|",
    ...runs[0].map((r, i) =>
      `| ${r.members} | ${spread(runs.map((x) => x[i].oneByOneMs))} | ${
        spread(runs.map((x) => x[i].bulkMs))
      } |`
    ),
    "",
  );
}

if (only.has("cluster-e2e")) {
  const runs: Array<Awaited<ReturnType<typeof benchClusterE2E>>> = [];
  const n = Number(flag("messages", "50000"));
  for (let i = 0; i < repeat; i++) runs.push(await benchClusterE2E(n, pings, sizes));
  results.clusterE2E = runs;
  out.push(
    `E2E on one node (KV store) and on three nodes (publisher and requester on node 1, subscriber and replier on node 2), ${repeat} runs (min / median / max):`,
    "",
    "| measure | one node | three nodes | three : one |",
    "|---|---|---|---|",
    ...sizes.map((size, i) =>
      `| ${size} B msgs/s | ${spread(runs.map((r) => r.single.tput[i].msgsPerSec))} | ${
        spread(runs.map((r) => r.cluster.tput[i].msgsPerSec))
      } | ${
        spread(runs.map((r) => r.cluster.tput[i].msgsPerSec / r.single.tput[i].msgsPerSec), 2)
      } |`
    ),
    `| round trip p50 ms | ${spread(runs.map((r) => r.single.lat.p50), 3)} | ${
      spread(runs.map((r) => r.cluster.lat.p50), 3)
    } | ${spread(runs.map((r) => r.cluster.lat.p50 / r.single.lat.p50), 2)} |`,
    `| round trip p99 ms | ${spread(runs.map((r) => r.single.lat.p99), 3)} | ${
      spread(runs.map((r) => r.cluster.lat.p99), 3)
    } | ${spread(runs.map((r) => r.cluster.lat.p99 / r.single.lat.p99), 2)} |`,
    "",
    `On the three nodes, raw nats.js (logged in as a stock client, plain room subject) next to E2E, same nodes, same run:`,
    "",
    "| measure | raw | E2E | E2E : raw |",
    "|---|---|---|---|",
    ...sizes.map((size, i) =>
      `| ${size} B msgs/s | ${spread(runs.map((r) => r.cluster.raw!.tput[i].msgsPerSec))} | ${
        spread(runs.map((r) => r.cluster.tput[i].msgsPerSec))
      } | ${
        spread(runs.map((r) => r.cluster.tput[i].msgsPerSec / r.cluster.raw!.tput[i].msgsPerSec), 2)
      } |`
    ),
    ...(["p50", "p99"] as const).map((p) =>
      `| round trip ${p} ms | ${spread(runs.map((r) => r.cluster.raw!.lat[p]), 3)} | ${
        spread(runs.map((r) => r.cluster.lat[p]), 3)
      } | ${spread(runs.map((r) => r.cluster.lat[p] / r.cluster.raw!.lat[p]), 2)} |`
    ),
    "",
  );
}

if (only.has("flood")) {
  const flood = await benchUploadFlood(floodParallel, 5);
  results.flood = flood;
  out.push(
    `Upload flood: ${flood.rounds} rounds of ${flood.parallel} parallel 8 MiB uploads with bad signatures naming a registered key:`,
    "",
    "| serve RSS before MiB | peak MiB | answers | ms |",
    "|---|---|---|---|",
    `| ${flood.rssBeforeMiB} | ${flood.rssPeakMiB} | ${
      Object.entries(flood.answers).map(([k, v]) => `${k}: ${v}`).join(", ")
    } | ${flood.ms} |`,
    "",
  );
}

if (only.has("cluster")) {
  const kills = Math.min(10, Math.max(1, Number(flag("kills", "3"))));
  const f = await benchCluster(kills);
  results.cluster = f;
  const sorted = [...f.failoverMs].sort((a, b) => a - b);
  out.push(
    `Three-node cluster on loopback (serve, --store kv --kv-replicas 3, route TLS), ${kills} kill -9 rounds:`,
    "",
    "| measure | ms |",
    "|---|---|",
    `| cold start → all three /healthz 200 | ${f.coldStartMs} |`,
    `| failover: kill → receiving again, p50 | ${sorted[Math.floor((sorted.length - 1) / 2)]} |`,
    `| failover: kill → receiving again, max | ${sorted.at(-1)} |`,
    `| failover, each | ${f.failoverMs.join(", ")} |`,
    `| kill → restarted node healthy, replicas current, each | ${f.rejoinMs.join(", ")} |`,
    "",
  );
}

if (only.has("control-plane")) {
  const controlPlane = await benchControlPlane({
    requests: Number(flag("cp-requests", "200")),
    connects: Number(flag("cp-connects", "200")),
    revokes: Number(flag("cp-revokes", "10")),
    repeat: Number(flag("cp-repeat", "3")),
  });
  results.controlPlane = controlPlane;
  out.push(controlPlaneTable(controlPlane), "");
}

if (only.has("cluster-connect")) {
  const baseline = flag("baseline", "");
  const logins = Math.min(2000, Math.max(1, Number(flag("cluster-connects", "200"))));
  const r = await benchClusterConnect(logins, baseline ? { baseline } : {});
  results.clusterConnect = r;
  out.push(
    `Login (connect through the auth callout) on a three-node cluster, node 2, ${logins} rounds ` +
      "alternating between the clusters, ms:",
    "",
    "| cluster | user of no rooms p50 | p99 | member of 10 rooms p50 | p99 |",
    "|---|---|---|---|---|",
    ...Object.entries(r).map(([k, v]) =>
      `| ${k} | ${v.none.p50.toFixed(2)} | ${v.none.p99.toFixed(2)} | ${v.many.p50.toFixed(2)} | ${
        v.many.p99.toFixed(2)
      } |`
    ),
    "",
  );
}

if (only.has("shell")) {
  const f = await benchShell(
    Math.min(1_000_000, Math.max(1, Number(flag("shell-lines", "10000")))),
  );
  results.shell = f;
  out.push(
    `\`unibus send\` of ${f.lines} lines from a file into an encrypted room, \`unibus listen --json ` +
      `--count ${f.lines}\` in another process, against the client library in one process:`,
    "",
    "| path | received | ms | msgs/s | msgs/s, first line to last |",
    "|---|---|---|---|---|",
    `| shell (send → listen --json), send's start included | ${f.received} | ${f.shellMs} | ${f.shellPerSec} | ${f.streamPerSec} |`,
    `| library (publish → subscribe) | ${f.lines} | ${f.libraryMs} | ${f.libraryPerSec} | |`,
    "",
  );
}

if (only.has("python")) {
  const f = await benchPython(
    Math.min(100_000, Math.max(10, Number(flag("py-messages", "5000")))),
    Math.min(10_000, Math.max(10, Number(flag("py-round-trips", "300")))),
  );
  results.python = f;
  out.push(
    `The Python client beside the TypeScript client (encrypted room, one serve) and raw nats-py ` +
      `(plain room, same logins): ${f.messages} publishes at 256 B and ${
        Math.max(1, Math.floor(f.messages / 10))
      } at 16 KiB, publish → subscribe, and ${f.roundTrips} sequential request/reply round trips:`,
    "",
    "| path | payload | msgs/s | request/reply p50 ms | p99 ms |",
    "|---|---|---|---|---|",
    ...PYTHON_SIZES.flatMap((size) =>
      ([["raw nats-py", f.natsPy], ["Python client", f.python], [
        "TypeScript client",
        f.typescript,
      ]] as const)
        .map(([name, fig]) => {
          const x = fig[String(size)];
          return `| ${name} | ${size} B | ${x.msgs_per_s} | ${x.p50_ms} | ${x.p99_ms} |`;
        })
    ),
    "",
  );
}

if (only.has("backup")) {
  const f = await benchBackup({
    users: Math.min(100_000, Math.max(2, Number(flag("backup-users", "1000")))),
    rooms: Math.min(1000, Math.max(1, Number(flag("backup-rooms", "200")))),
    membersPerRoom: 5,
    blobs: Math.min(1000, Math.max(0, Number(flag("backup-blobs", "200")))),
    blobBytes: 64 * 1024,
  });
  results.backup = f;
  out.push(
    `Backup and restore of a control plane of ${f.users} users, ${f.rooms} rooms (each with ` +
      `${f.membersPerRoom} members added in one signed change) and ${f.blobs} blobs of ` +
      `${f.blobBytes / 1024} KiB, each command in its own process as an operator runs it; ` +
      `the archive is ${(f.archiveBytes / 1024 / 1024).toFixed(1)} MiB:`,
    "",
    "| step | ms |",
    "|---|---|",
    `| plain copy of unibus.db (the floor) | ${f.fileCopyMs} |`,
    `| backup, SQLite while serve runs | ${f.backupSqliteMs} |`,
    `| restore into a new SQLite data dir (verify, write, read back) | ${f.restoreSqliteMs} |`,
    `| restore into a running KV node | ${f.restoreKvMs} |`,
    `| backup, KV | ${f.backupKvMs} |`,
    "",
  );
}

if (only.has("cold-start")) {
  const f = await benchColdStart(
    Math.min(200, Math.max(1, Number(flag("cold-starts", "20")))),
    Math.min(8, Math.max(1, Number(flag("cold-at-once", "2")))),
  );
  results.coldStart = f;
  out.push(
    `${f.starts} cold starts of three \`unibus serve\` nodes at once, ${f.atOnce} clusters at a ` +
      "time, no second try:",
    "",
    "| formed a meta group of 3 | of those, healed by the left-out node | failed | ready p50 ms | ready max ms | why they failed |",
    "|---|---|---|---|---|---|",
    `| ${f.formed} | ${f.healed} | ${f.failures.length} | ${f.readyP50Ms ?? "-"} | ${
      f.readyMaxMs ?? "-"
    } | ` +
      `${[...new Set(f.failures)].join("; ") || "-"} |`,
    "",
  );
}

if (only.has("sync")) {
  const runs = await benchSync({
    packets: Number(flag("sync-packets", "2000")),
    writes: Number(flag("sync-writes", "200")),
    repeat: Number(flag("sync-repeat", "3")),
  });
  results.sync = runs;
  out.push(syncTable(runs), "");
}

// History alone (it is part of scale too): --only=history.
if (only.has("history") && !only.has("scale")) {
  const history = await benchHistory({
    messages: Number(flag("history-messages", "1000000")),
    single: Number(flag("history", "100000")),
  });
  results.history = history;
  out.push(...historyReport(history));
}

if (only.has("scale")) {
  const scale = await benchScale(Deno.args);
  results.scale = scale;
  out.push(...scaleReport(scale));
}

console.log(json ? JSON.stringify(results, null, 2) : out.join("\n"));
