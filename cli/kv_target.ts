/**
 * The KV control plane of a running node, as the administration commands
 * (`user … --store kv`, `migrate-to-kv`) reach it: over NATS, as the
 * privileged internal service identity that `serve --internal-id-file`
 * persisted. Under `--bus-auth enforce` no bus user's ACL reaches
 * the `UNIBUS_*` buckets, so that identity is the only way in.
 *
 * @module
 */

import { connect, type NatsConnection } from "@nats-io/transport-node";
import { NativeNkeyPair, nkeyAuthenticatorFor, Prefix } from "../lib/auth/nkey.ts";
import { loadIdentity } from "../lib/identity/identity.ts";
import { isLoopbackHost } from "../lib/net/address.ts";
import { type KvStore, openStore } from "../lib/store/mod.ts";
import { accountUser } from "../server/nats/account_users.ts";
import { type OptionTable, UsageError } from "./args.ts";

/** Where a node's managed nats-server listens by default (seeds: 4250). */
const DEFAULT_NATS_URL = "nats://127.0.0.1:4250";

/** The flags that name a KV target; shared by every command that writes KV. */
export const KV_TARGET_OPTIONS: OptionTable = {
  "nats-url": {
    type: "string",
    valueName: "URL",
    description: "the node's NATS (--store kv)",
    defaultText: DEFAULT_NATS_URL,
  },
  "internal-id-file": {
    type: "string",
    valueName: "PATH",
    description: "the internal service identity serve persisted (--store kv; required)",
  },
  ca: {
    type: "string",
    valueName: "PATH",
    description: "CA (PEM) to pin TLS to; required for a non-loopback --nats-url",
  },
  "kv-replicas": {
    type: "string",
    valueName: "1|3",
    description: "replicas of buckets that do not exist yet (--store kv)",
    defaultText: "1",
  },
};

/** A validated KV target. */
export interface KvTarget {
  natsUrl: string;
  internalIdFile: string;
  caFile: string | null;
  replicas: 1 | 3;
}

type Values = Record<string, string | boolean | undefined>;

const str = (v: Values, k: string) => typeof v[k] === "string" ? v[k] as string : undefined;

/**
 * Validates the KV target flags; throws {@linkcode UsageError}.
 *
 * @example
 * ```ts
 * const t = parseKvTarget({ "internal-id-file": "/srv/unibus/internal.id" });
 * ```
 */
export function parseKvTarget(values: Values): KvTarget {
  const natsUrl = str(values, "nats-url") ?? DEFAULT_NATS_URL;
  let url: URL;
  try {
    url = new URL(natsUrl);
  } catch {
    throw new UsageError(`--nats-url: "${natsUrl}" is not a URL`);
  }
  if (url.protocol !== "nats:" && url.protocol !== "tls:") {
    throw new UsageError(`--nats-url: "${natsUrl}" must be a nats:// or tls:// URL`);
  }
  const caFile = str(values, "ca") ?? null;
  // The allowlist (keys, handles, roles) and sealed keys must not
  // cross a network in cleartext; a remote target needs TLS pinned to a CA.
  if (!isLoopbackHost(url.hostname) && caFile === null) {
    throw new UsageError(
      `--nats-url ${natsUrl} is not loopback: pass --ca (TLS pinned to that CA) ` +
        "so the allowlist does not travel in cleartext, or run this on the node",
    );
  }
  const internalIdFile = str(values, "internal-id-file");
  if (internalIdFile === undefined || internalIdFile === "") {
    throw new UsageError(
      "--store kv needs --internal-id-file, the identity serve persisted with --internal-id-file",
    );
  }
  return { natsUrl, internalIdFile, caFile, replicas: parseKvReplicas(str(values, "kv-replicas")) };
}

/**
 * The value of `--kv-replicas` (default 1); throws {@linkcode UsageError}.
 *
 * @example
 * ```ts
 * parseKvReplicas("3"); // 3
 * ```
 */
export function parseKvReplicas(text: string | undefined): 1 | 3 {
  if (text === undefined || text === "1") return 1;
  if (text === "3") return 3;
  throw new UsageError(`--kv-replicas: "${text}" must be 1 or 3`);
}

/** Connects fast or fails: an administrator waits seconds, not minutes. */
const CONNECT_TIMEOUT_MS = 3000;
/**
 * Long enough to ride out a failover: after a node dies, the JetStream meta
 * group and the buckets' stream groups it led elect new leaders, which took
 * 4–10 s on loopback; `user add` with one node of three down must succeed
 * (one node down is a normal day), not fail during the election.
 */
const BOOTSTRAP_TIMEOUT_MS = 20_000;

/**
 * Connects as the internal identity and opens the KV store. A missing or
 * unreadable identity file is an error (never a fresh key: that one would
 * not be the node's internal identity and would be refused anyway).
 *
 * @example
 * ```ts
 * const store = await openKvTarget(parseKvTarget(values));
 * try { console.log(await store.listUsers()); } finally { await store.close(); }
 * ```
 */
export async function openKvTarget(t: KvTarget): Promise<KvStore> {
  const id = await loadIdentity(t.internalIdFile).catch((err) => {
    throw new Error(`cannot load --internal-id-file: ${(err as Error).message}`);
  });
  if (t.caFile !== null) {
    await Deno.stat(t.caFile).catch(() => {
      throw new Error(`cannot read --ca ${t.caFile}`);
    });
  }
  return await openKvAs(t.natsUrl, new NativeNkeyPair(Prefix.User, id.signSeed), t);
}

/**
 * Connects to `natsUrl` as `user` and opens the KV store there.
 *
 * @example
 * ```ts
 * const store = await openKvAs("nats://127.0.0.1:4250", kp, { caFile: null, replicas: 1 });
 * ```
 */
export async function openKvAs(
  natsUrl: string,
  user: NativeNkeyPair,
  t: { caFile: string | null; replicas: 1 | 3 },
): Promise<KvStore> {
  const nc = await dialAs(natsUrl, user, t.caFile);
  try {
    return await openStore({
      kind: "kv",
      nc,
      replicas: t.replicas,
      bootstrapTimeoutMs: BOOTSTRAP_TIMEOUT_MS,
      ownsConnection: true,
    });
  } catch (err) {
    await nc.close().catch(() => {});
    throw new Error(
      `the control-plane KV at ${natsUrl} is unavailable: ${(err as Error).message}`,
    );
  }
}

/**
 * Connects to `natsUrl` as `user`, once (an administrator waits seconds, not
 * minutes), TLS pinned to `caFile` when given.
 *
 * @example
 * ```ts
 * const nc = await dialAs("nats://127.0.0.1:4250", kp, null);
 * ```
 */
export async function dialAs(
  natsUrl: string,
  user: NativeNkeyPair,
  caFile: string | null,
): Promise<NatsConnection> {
  try {
    return await connect({
      servers: natsUrl,
      name: "unibus-admin",
      timeout: CONNECT_TIMEOUT_MS,
      reconnect: false,
      authenticator: nkeyAuthenticatorFor(user),
      tls: caFile ? { caFile } : undefined,
    });
  } catch (err) {
    throw new Error(`cannot reach NATS at ${natsUrl}: ${(err as Error).message}`);
  }
}

/**
 * Connects to the target's node in the rooms' account (where persisted
 * rooms' streams are), as serve's identity there, derived from the internal
 * one (server/nats/account_users.ts).
 *
 * @example
 * ```ts
 * const nc = await dialRoomsAccount(parseKvTarget(values));
 * ```
 */
export async function dialRoomsAccount(t: KvTarget): Promise<NatsConnection> {
  const id = await loadIdentity(t.internalIdFile).catch((err) => {
    throw new Error(`cannot load --internal-id-file: ${(err as Error).message}`);
  });
  return await dialAs(t.natsUrl, accountUser(id.signSeed, "rooms"), t.caFile);
}

/**
 * One line on the users bucket's replication, as the runbook reads it.
 *
 * @example
 * ```ts
 * console.log(await replicationLine(store)); // "KV_UNIBUS_users: R1, not replicated (msgs=3)"
 * ```
 */
export async function replicationLine(store: KvStore): Promise<string> {
  try {
    const r = await store.replicationState();
    if (r.replicas === 1) return `KV_UNIBUS_users: R1, not replicated (msgs=${r.messages})`;
    return `KV_UNIBUS_users: R${r.replicas} leader=${r.leader ?? "none"} ` +
      `followers current ${r.current}/${r.followers} (msgs=${r.messages})`;
  } catch (err) {
    return `KV_UNIBUS_users: replication state unknown (${(err as Error).message})`;
  }
}
