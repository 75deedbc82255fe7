/**
 * What `connect()` opens before a client exists: the identity's key-exchange
 * key checked on the control plane, the receive state, and NATS dialled with
 * the identity's nkey.
 *
 * @module
 */

import { connect as natsConnect, type NatsConnection } from "@nats-io/transport-node";
import { inboxPrefixFor } from "../auth/acl.ts";
import { busUserAuthenticator, NativeNkeyPair, Prefix } from "../auth/nkey.ts";
import { readRegularFile } from "../fs/read_regular.ts";
import { ControlPlaneClient } from "./control_plane.ts";
import { DialPacing } from "./dial_pacing.ts";
import { ControlPlaneError, UnreachableError } from "./errors.ts";
import { installClientPatches } from "./patches.ts";
import { openReceiveState, type ReceiveState } from "./receive_state.ts";
import type { ConnectOptions } from "./types.ts";

/** What a client runs on: its NATS connection, control plane, receive state, dial pacing. */
export interface ClientConnections {
  nc: NatsConnection;
  control: ControlPlaneClient;
  state: ReceiveState | null;
  pacing: DialPacing;
}

/**
 * Opens what a client runs on, for `connect()`: the key-exchange key checked
 * (and registered if absent) on the control plane, the receive state, and
 * NATS dialled with the identity's nkey. Closes what it opened on failure.
 *
 * @example
 * ```ts
 * const { nc, control } = await dialClient({ natsServers, ctrlUrls, identity });
 * ```
 */
export async function dialClient(opts: ConnectOptions): Promise<ClientConnections> {
  // For programs that did not install them at start (see patches.ts).
  installClientPatches();
  // Never blocking on a FIFO, and bounded: a CA bundle is a few KiB.
  const caCert = opts.tls
    ? new TextDecoder().decode((await readRegularFile(opts.tls.caFile, 1024 * 1024)).bytes)
    : undefined;
  const control = new ControlPlaneClient({
    urls: opts.ctrlUrls,
    signer: opts.identity.signer,
    caCert,
  });
  try {
    // The key-exchange key must be on record (and unchanged) before anyone
    // can seal a room key to it.
    const me = await control.getUser(opts.identity.signPubHex);
    if (me.kexPub === null) {
      await control.putKex(opts.identity.kexPubHex, opts.identity.kexSigHex);
    } else if (me.kexPub !== opts.identity.kexPubHex) {
      throw new ControlPlaneError(
        409,
        "kex_conflict",
        "the server has another key-exchange key for this identity",
      );
    }
  } catch (err) {
    control.close();
    throw err;
  }
  let state: ReceiveState | null = null;
  if (opts.receiveStateFile) {
    try {
      state = await openReceiveState(opts.receiveStateFile, opts.identity.signPubHex);
    } catch (err) {
      control.close();
      throw err;
    }
  }
  const kp = new NativeNkeyPair(Prefix.User, opts.identity.signSeed);
  const pacing = new DialPacing(opts.tls !== undefined);
  let nc: NatsConnection;
  try {
    nc = await natsConnect({
      servers: opts.natsServers,
      authenticator: busUserAuthenticator(kp),
      inboxPrefix: inboxPrefixFor(opts.identity.signPubHex),
      name: opts.name ??
        `unibus-client-${opts.identity.handle ?? opts.identity.signPubHex.slice(0, 8)}`,
      maxReconnectAttempts: -1,
      reconnectDelayHandler: pacing.delay,
      // nats.js gives up after two refusals in a row; a cluster in failover
      // refuses for a few seconds (see AUTH_REFUSED_GIVE_UP_MS).
      ignoreAuthErrorAbort: true,
      tls: opts.tls ? { caFile: opts.tls.caFile } : undefined,
      timeout: 5000,
      // nats.js otherwise builds errors with stack traces for every request
      // it sends (JetStream calls: a history read makes one per message), in
      // case it fails; a failed request still rejects with its error.
      noAsyncTraces: true,
    });
  } catch (err) {
    control.close();
    throw new UnreachableError(
      `cannot connect to NATS (${opts.natsServers.join(", ")}): ${(err as Error).message}`,
      { cause: err },
    );
  }
  return { nc, control, state, pacing };
}

/** How long reconnects refused by the servers are retried before the client closes. */
const AUTH_REFUSED_GIVE_UP_MS = 30_000;

/**
 * Follows a client's NATS connection: down, up again, refused for good, and
 * told that its server is going away (lame duck).
 * Refused while reconnecting (connect() sets ignoreAuthErrorAbort): during a
 * failover a survivor refuses until its control-plane streams have a leader
 * again, so a refusal is retried; one that lasts AUTH_REFUSED_GIVE_UP_MS is
 * final (revoked, removed), and the connection is closed instead of
 * knocking forever.
 *
 * @example
 * ```ts
 * watchConnection(nc, {
 *   down: () => {},
 *   up: () => {},
 *   refusedForGood: (e) => console.error(e),
 *   lameDuck: () => nc.reconnect(),
 * });
 * ```
 */
export function watchConnection(
  nc: NatsConnection,
  on: { down(): void; up(): void; refusedForGood(error: Error): void; lameDuck?(): void },
): void {
  (async () => {
    // Since when the connection is down (0: up), for the refusal bound.
    let downSince = 0;
    for await (const s of nc.status()) {
      if (s.type === "disconnect") {
        on.down();
        downSince ||= Date.now();
      }
      if (s.type === "reconnect") {
        on.up();
        downSince = 0;
      }
      // The server is going away (nats-server's lame duck: a node being
      // restarted): it accepts no one new and will close this connection
      // within its lame duck duration.
      if (s.type === "ldm") on.lameDuck?.();
      if (
        s.type === "error" && (s.error as Error | undefined)?.name === "AuthorizationError" &&
        downSince > 0 && Date.now() - downSince > AUTH_REFUSED_GIVE_UP_MS
      ) {
        on.refusedForGood(s.error as Error);
        // Closing a connection that is already failing: its end is what
        // closed() reports to the program.
        nc.close().catch(() => {});
      }
    }
  })();
}
