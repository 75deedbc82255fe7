/**
 * In a cluster, each node enforces the connections ITS OWN nats-server holds.
 * Any node may answer a callout, and a node that dies takes its
 * memory with it, so "who answered" is no basis for cutting a connection
 * later: a revoke must still reach every connection on every surviving node.
 *
 * So the answering node publishes each admission ("grant": user, cid, the
 * exact permissions granted) on `_UNIBUS.grant.<server id>`, addressed to the
 * nats-server that holds the connection; the node owning that server records
 * it, and its enforcer kicks it when needed. Every few seconds the node asks
 * its own server for its connections (`$SYS.REQ.SERVER.<id>.CONNZ`) and drops
 * sessions that are gone (a missed disconnect event, or an old server id
 * after the child restarted).
 *
 * `_UNIBUS.` subjects cannot be rooms and are outside every bus user's ACL:
 * only the nodes' internal identities publish or subscribe there.
 *
 * @module
 */

import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Logger } from "../../lib/log.ts";
import type { Session, SessionRegistry } from "../auth/sessions.ts";
import { USERS_ACCOUNT } from "../nats/config.ts";

/**
 * Prefix of the grant subjects; the server id follows.
 *
 * A grant is a {@linkcode Session} as JSON, read field by field, unknown
 * fields ignored, so a newer node may add fields. It carries no format
 * number on purpose: a grant an older node refused would be a connection its
 * enforcer never cuts on a revoke, so the fields read below keep their names
 * and meanings for as long as a node of the previous version may run beside
 * a newer one (docs/operations.md "Upgrades").
 */
export const GRANT_SUBJECT_PREFIX = "_UNIBUS.grant";

/**
 * Publishes a grant for the node whose server holds the connection; pass it
 * as the callout's `grant` option.
 *
 * @example
 * ```ts
 * startAuthCallout({ nc, issuer, store, sessions, log, grant: grantPublisher(nc) });
 * ```
 */
export function grantPublisher(app: NatsConnection): (s: Session) => void {
  return (s) => app.publish(`${GRANT_SUBJECT_PREFIX}.${s.serverId}`, JSON.stringify(s));
}

/** Options for {@linkcode startSessionFeed}. */
export interface SessionFeedOptions {
  /** The system-account connection to this node's nats-server. */
  sys: NatsConnection;
  /** The internal app-account connection (grants). */
  app: NatsConnection;
  sessions: SessionRegistry;
  log: Logger;
  reconcileMs?: number;
}

/**
 * Records grants for this node's server and prunes what the server no longer holds.
 *
 * @example
 * ```ts
 * const feed = startSessionFeed({ sys, app, sessions, log });
 * await feed.stop();
 * ```
 */
export function startSessionFeed(opts: SessionFeedOptions): { stop(): Promise<void> } {
  const ownId = () => opts.sys.info?.server_id ?? null;
  const sub: Subscription = opts.app.subscribe(`${GRANT_SUBJECT_PREFIX}.*`, {
    callback: (_err, msg) => {
      const id = ownId();
      if (!id || msg.subject !== `${GRANT_SUBJECT_PREFIX}.${id}`) return;
      try {
        const s = msg.json<Session>();
        if (
          s.serverId === id && typeof s.cid === "number" && typeof s.signPub === "string" &&
          s.permissions?.pub && s.permissions?.sub
        ) {
          opts.sessions.add({
            signPub: s.signPub,
            serverId: s.serverId,
            cid: s.cid,
            permissions: s.permissions,
            admittedAt: s.admittedAt,
          });
        }
      } catch { /* not a grant */ }
    },
  });

  const reconcile = async () => {
    const id = ownId();
    if (!id) return;
    const res = await opts.sys.request(
      `$SYS.REQ.SERVER.${id}.CONNZ`,
      JSON.stringify({ acc: USERS_ACCOUNT, limit: 100_000 }),
      { timeout: 2000 },
    );
    const live = new Set(
      (res.json<{ data?: { connections?: Array<{ cid: number }> } }>().data?.connections ?? [])
        .map((c) => c.cid),
    );
    const now = Date.now();
    for (const signPub of opts.sessions.users()) {
      for (const s of opts.sessions.forUser(signPub)) {
        // A grant can precede the connection's appearance in CONNZ by a moment.
        const settled = now - s.admittedAt > 2000;
        if (s.serverId !== id || (settled && !live.has(s.cid))) {
          opts.sessions.remove(s.serverId, s.cid);
        }
      }
    }
  };
  const interval = opts.reconcileMs ?? 5000;
  let running = true;
  let pass: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    if (!running) return;
    pass = reconcile().catch((err) =>
      opts.log.warn("could not list this node's connections", { error: err })
    );
  }, interval);
  return {
    async stop() {
      running = false;
      clearInterval(timer);
      await pass;
      sub.unsubscribe();
    },
  };
}
