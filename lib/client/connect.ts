/**
 * `connect()`: an identity's way onto the bus. It checks the identity's
 * key-exchange key on the control plane, opens the receive state, and dials
 * NATS with the identity's nkey, then hands everything to a
 * {@linkcode UnibusClient}.
 *
 * @module
 */

import { connect as natsConnect, type NatsConnection } from "@nats-io/transport-node";
import { inboxPrefixFor } from "../auth/acl.ts";
import { busUserAuthenticator, NativeNkeyPair, Prefix } from "../auth/nkey.ts";
import { readRegularFile } from "../fs/read_regular.ts";
import { UnibusClient } from "./client.ts";
import { ControlPlaneClient } from "./control_plane.ts";
import { DialPacing } from "./dial_pacing.ts";
import { ControlPlaneError, UnreachableError } from "./errors.ts";
import { installClientPatches } from "./patches.ts";
import { openReceiveState, type ReceiveState } from "./receive_state.ts";
import type { ConnectOptions } from "./types.ts";

/**
 * Connects an identity to unibus.
 *
 * @example
 * ```ts
 * const client = await connect({
 *   natsServers: ["nats://127.0.0.1:4250"],
 *   ctrlUrls: ["http://127.0.0.1:8470"],
 *   identity: await loadIdentity("alice.id"),
 * });
 * ```
 */
export async function connect(opts: ConnectOptions): Promise<UnibusClient> {
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
  return new UnibusClient(opts.identity, nc, control, state, pacing, opts.onError);
}
