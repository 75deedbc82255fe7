/**
 * The store of a `serve` under test, opened from the test process as another
 * writer would: the SQLite file (as the offline CLI does), or the KV buckets
 * through a connection with the persisted internal identity (as `user add
 * --store kv` and other nodes do).
 *
 * @module
 */

import { connect } from "@nats-io/transport-node";
import { NativeNkeyPair, nkeyAuthenticatorFor, Prefix } from "../../lib/auth/nkey.ts";
import { loadIdentity } from "../../lib/identity/identity.ts";
import { openStore } from "../../lib/store/mod.ts";
import type { Store } from "../../lib/store/store.ts";
import type { ServeUnderTest } from "./serve_process.ts";

/** The control-plane backends the integration tests run on. */
export type StoreKind = "sqlite" | "kv";

/** serve flags that select `kind` (KV needs the internal identity persisted). */
export function storeArgs(kind: StoreKind, internalIdFile: string): string[] {
  return kind === "kv"
    ? ["--store", "kv", "--internal-id-file", internalIdFile]
    : ["--internal-id-file", internalIdFile];
}

/**
 * Opens the store of `s` from this process.
 *
 * @example
 * ```ts
 * const store = await openServeStore(s, "kv", idFile);
 * ```
 */
export async function openServeStore(
  s: ServeUnderTest,
  kind: StoreKind,
  internalIdFile: string,
): Promise<Store> {
  if (kind === "sqlite") return await openStore({ kind: "sqlite", path: `${s.dataDir}/unibus.db` });
  const id = await loadIdentity(internalIdFile);
  const nc = await connect({
    servers: `127.0.0.1:${s.natsPort}`,
    authenticator: nkeyAuthenticatorFor(new NativeNkeyPair(Prefix.User, id.signSeed)),
  });
  return await openStore({ kind: "kv", nc, replicas: 1, ownsConnection: true }).catch(
    async (err) => {
      await nc.close();
      throw err;
    },
  );
}
