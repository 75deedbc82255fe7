/**
 * A real `serve` in enforce mode with client-library connections on it, for
 * end-to-end tests of the client: every connection made through the bus is
 * closed by `stop()`, then serve and its files.
 *
 * @module
 */

import { accountUser, type DerivedAccount } from "../../server/nats/account_users.ts";
import { connect as natsConnect, type NatsConnection } from "@nats-io/transport-node";
import { nkeyAuthenticatorFor } from "../../lib/auth/nkey.ts";
import {
  connect,
  type ConnectOptions,
  type RoomInfo,
  type UnibusClient,
} from "../../lib/client/client.ts";
import { loadIdentity } from "../../lib/identity/identity.ts";
import type { Store } from "../../lib/store/store.ts";
import { addBusUser, type BusUser } from "./bus.ts";
import { type ServeUnderTest, startServe } from "./serve_process.ts";
import { openServeStore, storeArgs, type StoreKind } from "./serve_store.ts";

/**
 * Registers `fn` as one test per store backend, named after it.
 *
 * @example
 * ```ts
 * eachStore("two members talk", async (kind) => { const b = await clientBus(kind); });
 * ```
 */
export function eachStore(name: string, fn: (kind: StoreKind) => Promise<void>): void {
  for (const kind of ["sqlite", "kv"] as const) Deno.test(`${name} (${kind})`, () => fn(kind));
}

/** A serve under test and the connections made to it. */
export interface ClientBus {
  s: ServeUnderTest;
  store: Store;
  internalId: string;
  /** A client library connection as `user`, closed by stop(). */
  client(
    user: BusUser,
    opts?: Omit<ConnectOptions, "natsServers" | "ctrlUrls" | "identity">,
  ): Promise<UnibusClient>;
  /**
   * A raw connection in the users' account with full rights there (serve's
   * notice identity, like a curious operator on the wire): sees and
   * publishes room subjects and inboxes.
   */
  tap(): Promise<NatsConnection>;
  /** A raw connection as serve's identity in the rooms' account (the room streams). */
  roomsTap(): Promise<NatsConnection>;
  /** Closes every connection made through this bus, then serve. */
  stop(): Promise<void>;
}

/**
 * Starts serve with `--bus-auth enforce` on the `kind` store and opens that
 * store from the test, as another writer would.
 *
 * @example
 * ```ts
 * const b = await clientBus();
 * try {
 *   const ca = await b.client(await addBusUser(b.store, "alice"));
 * } finally {
 *   await b.stop();
 * }
 * ```
 */
export async function clientBus(kind: StoreKind = "sqlite"): Promise<ClientBus> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-e2e-" });
  const internalId = `${dir}/internal.id`;
  const s = await startServe({
    extraArgs: ["--bus-auth", "enforce", ...storeArgs(kind, internalId)],
  });
  // A store that does not open (KV not reachable in time) must not leave serve running.
  const store = await openServeStore(s, kind, internalId).catch(async (err) => {
    await s.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  });
  const opened: Array<{ close(): Promise<void> }> = [];
  const track = <T extends { close(): Promise<void> }>(c: T): T => (opened.push(c), c);
  const accountTap = async (account: DerivedAccount) => {
    const id = await loadIdentity(internalId);
    return track(
      await natsConnect({
        servers: `127.0.0.1:${s.natsPort}`,
        authenticator: nkeyAuthenticatorFor(accountUser(id.signSeed, account)),
      }),
    );
  };
  return {
    s,
    store,
    internalId,
    async client(user, opts = {}) {
      return track(
        await connect({
          ...opts,
          natsServers: [`nats://127.0.0.1:${s.natsPort}`],
          ctrlUrls: [s.httpUrl],
          identity: user.identity,
        }),
      );
    },
    tap: () => accountTap("users"),
    roomsTap: () => accountTap("rooms"),
    async stop() {
      for (const c of opened.reverse()) await c.close().catch(() => {});
      await store.close();
      await s.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Alice and Bob on the allowlist, a client as each, and a room of theirs. */
export interface RoomOfTwo {
  alice: BusUser;
  bob: BusUser;
  ca: UnibusClient;
  cb: UnibusClient;
  room: RoomInfo;
}

/**
 * Adds alice and bob to `b`'s allowlist, connects a client as each, has alice
 * create `subject` (the default policy) and add bob, and refreshes bob's
 * session so the subject is his at once.
 *
 * @example
 * ```ts
 * const { alice, cb, room } = await roomOfTwo(b, "agent.scout.in");
 * ```
 */
export async function roomOfTwo(b: ClientBus, subject: string): Promise<RoomOfTwo> {
  const alice = await addBusUser(b.store, "alice");
  const bob = await addBusUser(b.store, "bob");
  const ca = await b.client(alice);
  const cb = await b.client(bob);
  const room = await ca.createRoom(subject);
  await ca.addMember(room, bob.hex);
  await cb.refreshSession();
  return { alice, bob, ca, cb, room };
}

/**
 * Collects plaintexts until `n` arrived; `wait()` fails, saying what did
 * arrive, after `ms`.
 *
 * @example
 * ```ts
 * const got = collector(3);
 * await client.subscribe(room, (_m, p) => got.push(new TextDecoder().decode(p)));
 * assertEquals(await got.wait(), ["a", "b", "c"]);
 * ```
 */
export function collector(n: number, ms = 5000) {
  const got: string[] = [];
  const done = Promise.withResolvers<string[]>();
  const timer = setTimeout(
    () => done.reject(new Error(`${got.length} of ${n} messages within ${ms} ms: ${got}`)),
    ms,
  );
  // Handled here too, so a test that failed before waiting leaves no stray rejection.
  done.promise.catch(() => {});
  return {
    got,
    push(text: string) {
      got.push(text);
      if (got.length >= n) {
        clearTimeout(timer);
        done.resolve(got);
      }
    },
    wait: () => done.promise,
    cancel: () => clearTimeout(timer),
  };
}
