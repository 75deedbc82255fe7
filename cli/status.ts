/**
 * `unibus status`: the health of one node or a whole cluster in one look,
 * from each node's unauthenticated `/healthz` and `/metrics`: posture, data
 * plane, the cluster's meta leader and members, each control-plane bucket's
 * replicas and which followers lag, connections, warnings and problems.
 * Exit 1 when any node is unreachable or unhealthy, so it fits a cron job or
 * a monitor's check; warnings alone (a peer down while a quorum serves)
 * leave it 0.
 *
 * @module
 */

import { pinnedFetch } from "../lib/platform/mod.ts";
import { type OptionTable, parseCommandArgs, renderHelp, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import { checkCtrlSeeds, csv } from "./contexts.ts";

const DEFAULT_SEED = "http://127.0.0.1:8470";

const OPTIONS: OptionTable = {
  "ctrl-seeds": {
    type: "string",
    valueName: "URL,…",
    description: "the nodes' control-plane URLs",
    defaultText: DEFAULT_SEED,
  },
  ca: { type: "string", valueName: "FILE", description: "trust only this CA for https:// seeds" },
  json: { type: "boolean", description: "print every node's figures as JSON" },
  timeout: {
    type: "string",
    valueName: "SECONDS",
    description: "per request, 1 to 60",
    defaultText: "10",
  },
};

const HELP = renderHelp(
  "unibus status [--ctrl-seeds URL,…] [--ca FILE] [--json]",
  "Prints the health of each node (posture, data plane, cluster, buckets, connections, " +
    "warnings) from its /healthz and /metrics; exit 1 when any node is unreachable or unhealthy.",
  OPTIONS,
);

/** One stream's replication as `/healthz` reports it. */
interface StreamHealth {
  stream: string;
  replicas?: number;
  leader?: string | null;
  current?: string[];
  lagged?: string[];
  error?: string | null;
}

/** What `unibus status` learned of one node. */
export interface NodeStatus {
  url: string;
  /** True when `/healthz` answered 200 with status ok and no problems. */
  healthy: boolean;
  /** `/healthz`'s HTTP status, or null when the node could not be reached. */
  httpStatus: number | null;
  /** Why the node could not be read, when it could not. */
  error: string | null;
  /** `/healthz`'s answer as it came. */
  health: Record<string, unknown> | null;
  /** `unibus_connections` from `/metrics`, when it could be read. */
  connections: number | null;
  warnings: string[];
  problems: string[];
}

/**
 * Reads one node.
 *
 * @example
 * ```ts
 * const s = await nodeStatus("http://127.0.0.1:8470", fetch, 5000);
 * if (!s.healthy) console.log(s.problems);
 * ```
 */
export async function nodeStatus(
  url: string,
  get: (url: string, init: RequestInit) => Promise<Response>,
  timeoutMs: number,
): Promise<NodeStatus> {
  const base = url.replace(/\/+$/, "");
  const status: NodeStatus = {
    url: base,
    healthy: false,
    httpStatus: null,
    error: null,
    health: null,
    connections: null,
    warnings: [],
    problems: [],
  };
  try {
    const res = await get(`${base}/healthz`, { signal: AbortSignal.timeout(timeoutMs) });
    status.httpStatus = res.status;
    const body = await res.text();
    try {
      const parsed = JSON.parse(body);
      if (parsed && typeof parsed === "object") status.health = parsed;
    } catch {
      status.error = `/healthz answered ${res.status} without JSON`;
    }
  } catch (err) {
    status.error = err instanceof Error && err.name === "TimeoutError"
      ? `unreachable: no answer within ${timeoutMs / 1000} s`
      : `unreachable: ${err instanceof Error ? err.message : String(err)}`;
    return status;
  }
  const cluster = status.health?.cluster as Record<string, unknown> | undefined;
  status.warnings = strings(cluster?.warnings);
  status.problems = strings(cluster?.problems);
  if (status.health && status.health.status !== "ok") {
    status.problems.unshift(`status ${JSON.stringify(status.health.status)}`);
  }
  status.healthy = status.httpStatus === 200 && status.health?.status === "ok" &&
    status.problems.length === 0;
  try {
    const res = await get(`${base}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    const m = /^unibus_connections(?:\{[^}]*\})? (\d+(?:\.\d+)?)$/m.exec(text);
    if (res.ok && m) status.connections = Number(m[1]);
  } catch { /* connections stay unknown; health is what decides */ }
  return status;
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.map(String) : [];
}

/**
 * The lines `unibus status` prints for one node.
 *
 * @example
 * ```ts
 * console.log(renderNode(await nodeStatus(url, fetch, 5000)).join("\n"));
 * ```
 */
export function renderNode(s: NodeStatus): string[] {
  if (!s.health) return [`${s.url}  UNREACHABLE  ${s.error ?? ""}`.trimEnd()];
  const h = s.health;
  const posture = (h.posture ?? {}) as Record<string, unknown>;
  const plane = (h.dataPlane ?? {}) as Record<string, unknown>;
  const flags = [
    String(posture.auth ?? "?"),
    posture.acl ? "acl" : "no-acl",
    posture.tls ? "tls" : "no-tls",
    `store ${posture.store ?? "?"}`,
  ];
  const lines = [
    [
      s.url,
      s.healthy ? "ok" : `UNHEALTHY (${s.httpStatus})`,
      `unibus ${h.version ?? "?"}`,
      flags.join(" "),
      plane.connected ? `data plane up${plane.jetstream ? " (jetstream)" : ""}` : "data plane DOWN",
      `connections ${s.connections ?? "?"}`,
    ].join("  "),
  ];
  const c = h.cluster as Record<string, unknown> | undefined;
  if (c) {
    const peers = Array.isArray(c.peers) ? c.peers as Array<Record<string, unknown>> : [];
    lines.push(
      `  cluster ${c.name ?? "?"}, node ${c.node ?? "?"}: meta leader ${
        c.metaLeader ?? "NONE"
      }, meta group ${c.clusterSize ?? "?"} of ${c.configuredSize ?? "?"}, quorum ${
        c.quorum ? "yes" : "NO"
      }, replicas current ${c.replicasCurrent ? "yes" : "no"}`,
    );
    for (const p of peers) {
      lines.push(
        `  peer ${p.name ?? "?"}: route ${p.route ?? "?"}, current ${p.current ? "yes" : "no"}`,
      );
    }
    for (const st of (Array.isArray(c.streams) ? c.streams : []) as StreamHealth[]) {
      const lagged = st.lagged?.length ? st.lagged.join(",") : "-";
      lines.push(
        `  stream ${st.stream}: R${st.replicas ?? "?"}, leader ${st.leader ?? "NONE"}, current ${
          st.current?.join(",") || "-"
        }, lagged ${lagged}${st.error ? `, error ${st.error}` : ""}`,
      );
    }
  }
  for (const w of s.warnings) lines.push(`  warning: ${w}`);
  for (const p of s.problems) lines.push(`  problem: ${p}`);
  if (s.error) lines.push(`  problem: ${s.error}`);
  return lines;
}

/** `unibus status`. */
export const statusCommand: Command = {
  name: "status",
  async run(argv) {
    const { values: v } = parseCommandArgs(argv, OPTIONS, { maxPositionals: 0 });
    if (v.help) {
      console.log(HELP);
      return 0;
    }
    const seeds = csv(String(v["ctrl-seeds"] ?? DEFAULT_SEED));
    checkCtrlSeeds(seeds, typeof v.ca === "string" ? v.ca : null);
    const timeoutS = Number(v.timeout ?? "10");
    if (!Number.isInteger(timeoutS) || timeoutS < 1 || timeoutS > 60) {
      throw new UsageError("--timeout must be a whole number of seconds from 1 to 60");
    }
    let ca: string | undefined;
    if (typeof v.ca === "string") {
      try {
        ca = await Deno.readTextFile(v.ca);
      } catch (err) {
        throw new UsageError(`--ca ${v.ca}: ${err instanceof Error ? err.message : err}`);
      }
    }
    const http = await pinnedFetch(ca);
    try {
      const nodes = await Promise.all(seeds.map((s) => nodeStatus(s, http.fetch, timeoutS * 1000)));
      if (v.json) console.log(JSON.stringify({ healthy: nodes.every((n) => n.healthy), nodes }));
      else console.log(nodes.flatMap(renderNode).join("\n"));
      return nodes.every((n) => n.healthy) ? 0 : 1;
    } finally {
      http.close();
    }
  },
};
