/**
 * Keeps live data-plane connections in line with the store. NATS fixes a
 * connection's permissions when it authenticates, so without this a revoked
 * user, or a member removed from a room, would keep their access for as long
 * as their TCP connection lasts.
 *
 * It re-reads a connected user when the store's change feed
 * ({@linkcode Store.watchChanges}) says they or one of the rooms changed, when
 * a connection of theirs is admitted, and every `intervalMs` as a backstop:
 * - revoked or deleted → every connection of theirs is kicked (and the callout
 *   refuses the reconnect);
 * - rights narrowed (a room removed) → kicked, so the automatic reconnect gets
 *   the new, smaller ACL;
 * - rights widened (a room added) → a notice on the user's private inbox
 *   (`<inbox>.unibus.refresh`) telling the client to refresh its session;
 *   nothing is cut, because nothing they hold is wrong.
 *
 * The change feed, not this process's own routes, is what drives it, because
 * the allowlist and rooms change outside this process too (`unibus user
 * revoke` on the SQLite file; the CLI or another node on the KV store).
 *
 * Re-reading a user when one of their connections is admitted closes the
 * race where the callout read the user just before a revocation whose feed
 * event arrived before the session was recorded. That re-read is the
 * callout's own linearizable read ({@linkcode Store.getUserAccess}), so the
 * race stays closed while a cluster elects a leader.
 *
 * @module
 */

import { type NatsConnection, RequestError } from "@nats-io/transport-node";
import { inboxPrefixFor, permissionsNarrowed, userPermissions } from "../../lib/auth/acl.ts";
import { askEveryServer } from "../nats/every_server.ts";
import type { Logger } from "../../lib/log.ts";
import type { Store } from "../../lib/store/store.ts";
import { noticeHeaders } from "../rooms/notices.ts";
import { USERS_ACCOUNT } from "../nats/config.ts";
import type { Session, SessionRegistry } from "./sessions.ts";
import { REFRESH_NOTICE_SUFFIX } from "../../lib/notices.ts";

/** What the enforcer needs. */
export interface EnforcerOptions {
  /** A system-account connection: kick requests and disconnect events. */
  sys: NatsConnection;
  /** serve's connection in the users' account: refresh notices. */
  notices: NatsConnection;
  store: Store;
  sessions: SessionRegistry;
  log: Logger;
  /** Backstop full pass; the change feed normally acts first. */
  intervalMs?: number;
  /** Called for each connection cut, for metrics. */
  onKick?: (reason: string) => void;
}

// The subject suffix, under a user's inbox prefix, of "refresh your session"
// notices; one constant with the client that listens (lib/notices.ts).
export { REFRESH_NOTICE_SUFFIX };

/**
 * The ids of the nats-servers that answer a `$SYS.REQ.SERVER.PING` on `sys`
 * (every server of the cluster, or the one managed child), gathered until
 * they stop arriving; empty if none answers in time.
 *
 * @example
 * ```ts
 * const live = await liveServerIds(sys.nc); // Set { "NDJ3…" }
 * ```
 */
export async function liveServerIds(sys: NatsConnection, maxWaitMs = 2000): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const a of await askEveryServer<{ server?: { id?: unknown } }>(sys, null, maxWaitMs)) {
    const id = a.server?.id;
    if (typeof id === "string" && id) ids.add(id);
  }
  return ids;
}

/** Forgets connections as they close, so the registry only holds live ones. */
function forgetOnDisconnect(opts: EnforcerOptions): { unsubscribe(): void } {
  return opts.sys.subscribe(`$SYS.ACCOUNT.${USERS_ACCOUNT}.DISCONNECT`, {
    callback: (_err, msg) => {
      try {
        const ev = msg.json<{ client?: { id?: number }; server?: { id?: string } }>();
        if (ev.server?.id && typeof ev.client?.id === "number") {
          opts.sessions.remove(ev.server.id, ev.client.id);
        }
      } catch { /* not an event we understand */ }
    },
  });
}

/**
 * After our system connection reconnects (the managed nats-server was
 * restarted, or we moved to another cluster member), sessions of servers
 * that no longer answer are dropped in one step: their connections are gone,
 * and those clients that came back were admitted anew.
 */
function pruneOnReconnect(
  opts: EnforcerOptions,
): { dropGoneServers: () => Promise<void>; pruned: () => Promise<void> } {
  const dropGoneServers = async () => {
    const live = await liveServerIds(opts.sys).catch(() => new Set<string>());
    // No answer at all proves nothing about the servers; keep everything.
    if (live.size === 0) return;
    const dropped = opts.sessions.retainServers(live);
    if (dropped.length > 0) {
      opts.log.info("sessions of a gone nats-server dropped", {
        sessions: dropped.length,
        serverIds: [...new Set(dropped.map((d) => d.serverId))],
      });
    }
  };
  let pruning: Promise<void> = Promise.resolve();
  (async () => {
    for await (const st of opts.sys.status()) {
      if (st.type === "reconnect") {
        pruning = pruning.then(dropGoneServers);
        await pruning;
      }
    }
  })().catch((err) => opts.log.error("session pruning stopped", { error: err }));
  return { dropGoneServers, pruned: () => pruning };
}

/**
 * Re-reads one connected user and cuts or notifies its sessions.
 *
 * `viaAccess`: read with Store.getUserAccess, as the callout does, for the
 * re-check that follows each admission. It is linearizable (never older
 * than a write acknowledged before it, on any node: SQLite answers from
 * memory only while it proves nothing was committed since, KV checks the
 * records against the buckets' RAFT logs), so a login that overlapped a
 * revoke is cut even during a leader election; and on SQLite it is one
 * small read instead of two: that re-check runs while nats-server
 * finishes the login it just answered, and on a 2-core machine its two
 * reads took CPU from it. Passes the change feed or the backstop start
 * read afresh, so even a flaw in that cache could not keep a revoked user
 * connected past the next backstop pass. On KV those passes read plainly
 * (a stream leader, or a replica while one is elected), which is cheaper
 * for a pass over every connected user and may lag a revoke by the
 * election: they only decide cuts, and the next pass reads again, so an
 * old answer delays a cut, never admits anyone.
 */
async function reconcile(
  opts: EnforcerOptions,
  on: {
    index: (signPub: string, roomIds: string[]) => void;
    kick: (s: Session, reason: string) => Promise<void>;
    kickUser: (signPub: string, reason: string) => Promise<void>;
  },
  signPub: string,
  viaAccess: boolean,
): Promise<void> {
  const access = viaAccess ? await opts.store.getUserAccess(signPub) : null;
  const user = access ? access.user : await opts.store.getUser(signPub);
  if (!user || user.status !== "active") {
    on.index(signPub, []);
    await on.kickUser(signPub, user ? "user revoked" : "user removed");
    return;
  }
  const rooms = access ? access.rooms : await opts.store.listRoomsForMember(signPub);
  on.index(signPub, rooms.map((r) => r.id));
  const now = userPermissions(signPub, rooms);
  const digest = JSON.stringify(now);
  for (const s of opts.sessions.forUser(signPub)) {
    if (permissionsNarrowed(s.permissions, now)) {
      await on.kick(s, "membership narrowed");
    } else if (JSON.stringify(s.permissions) !== digest && s.refreshNoticeFor !== digest) {
      s.refreshNoticeFor = digest;
      opts.notices.publish(`${inboxPrefixFor(signPub)}.${REFRESH_NOTICE_SUFFIX}`, "refresh", {
        headers: noticeHeaders(),
      });
    }
  }
}

/**
 * Re-checks `users` one after another; true if any re-check failed (that
 * user is handed to `retry`: new connections fail closed in the callout,
 * and this one is re-checked on the next pass).
 */
async function recheckAll(
  opts: EnforcerOptions,
  users: Array<[string, boolean]>,
  reconcileUser: (signPub: string, viaAccess: boolean) => Promise<void>,
  retry: (signPub: string) => void,
): Promise<boolean> {
  let failed = false;
  for (const [signPub, viaAccess] of users) {
    try {
      await reconcileUser(signPub, viaAccess);
    } catch (err) {
      retry(signPub);
      failed = true;
      opts.log.error("could not re-check a connected user", { signPub, error: err });
    }
  }
  return failed;
}

/**
 * Starts the enforcer; returns a handle to stop it.
 *
 * @example
 * ```ts
 * const enforcer = startEnforcer({ sys, notices, store, sessions, log });
 * enforcer.recheckNow(); // after a membership change
 * await enforcer.kickUser(signPubHex, "revoked");
 * await enforcer.stop();
 * ```
 */
/**
 * How a session is cut: a KICK of its connection through the system
 * account, forgetting the session once it is gone (or its server is).
 */
function connectionCutter(
  opts: EnforcerOptions,
): (s: Session, reason: string) => Promise<void> {
  // Sessions whose cut already failed once: later failures of the same
  // session are retried quietly instead of logging every 250 ms.
  const failedOnce = new WeakSet<Session>();

  return async (s: Session, reason: string) => {
    try {
      const res = await opts.sys.request(
        `$SYS.REQ.SERVER.${s.serverId}.KICK`,
        JSON.stringify({ cid: s.cid }),
        { timeout: 2000 },
      );
      const body = res.json<{ error?: { description?: string } }>();
      if (body.error) throw new Error(body.error.description ?? "kick refused");
      opts.log.audit("connection.cut", "connection cut", {
        signPub: s.signPub,
        cid: s.cid,
        reason,
      });
      opts.onKick?.(reason);
      opts.sessions.remove(s.serverId, s.cid);
    } catch (err) {
      if (/not found/i.test((err as Error).message)) {
        opts.sessions.remove(s.serverId, s.cid); // already gone
        return;
      }
      // Nothing answers for that server id: the nats-server that held the
      // connection is gone (restarted, or left the cluster), and its
      // connections died with it; the client is back, if at all, through a
      // new session on a live server. Retrying would loop forever (it did:
      // one warning every 250 ms after a restart). Our own connection to
      // NATS being down is different: that is a timeout or a closed
      // connection, and the session is kept.
      if (err instanceof RequestError && err.isNoResponders()) {
        opts.sessions.remove(s.serverId, s.cid);
        opts.log.warn("connection's nats-server is gone; session forgotten", {
          signPub: s.signPub,
          cid: s.cid,
          serverId: s.serverId,
          reason,
        });
        return;
      }
      // Kept: the next pass tries again. Forgetting it here would leave a
      // revoked user connected for good. A connection that is already gone
      // leaves the registry through its disconnect event. One warning per
      // session; the retries after it are debug lines.
      const fields = { signPub: s.signPub, cid: s.cid, serverId: s.serverId, error: err };
      if (failedOnce.has(s)) {
        opts.log.debug("could not cut a connection; will retry", fields);
      } else {
        failedOnce.add(s);
        opts.log.warn("could not cut a connection; will retry", fields);
      }
    }
  };
}

/**
 * The rooms in each connected user's rights at their last re-check, and
 * back: a room change re-reads the users who held it and its members now,
 * not everyone connected. Re-reading everyone on every change made room
 * creation fall from 5 to 2 rooms/s between 100 and 1,000 rooms of 10 with
 * 200 users online (docs/benchmarks.md). A user admitted but not yet
 * re-checked is missing here, but is marked by its admission; the full pass
 * every interval catches anything else.
 */
class RoomIndex {
  #roomUsers = new Map<string, Set<string>>();
  #userRooms = new Map<string, Set<string>>();

  /** Records `signPub`'s rooms as `roomIds` (none: forgets the user). */
  set(signPub: string, roomIds: string[]): void {
    const now = new Set(roomIds);
    for (const id of this.#userRooms.get(signPub) ?? []) {
      if (now.has(id)) continue;
      const users = this.#roomUsers.get(id);
      users?.delete(signPub);
      if (users?.size === 0) this.#roomUsers.delete(id);
    }
    for (const id of now) {
      const users = this.#roomUsers.get(id) ?? new Set<string>();
      this.#roomUsers.set(id, users.add(signPub));
    }
    if (now.size > 0) this.#userRooms.set(signPub, now);
    else this.#userRooms.delete(signPub);
  }

  /** The users who held room `id` at their last re-check. */
  usersOf(id: string): Iterable<string> {
    return this.#roomUsers.get(id) ?? [];
  }

  /** Every user recorded. */
  users(): string[] {
    return [...this.#userRooms.keys()];
  }
}

export function startEnforcer(opts: EnforcerOptions) {
  const interval = opts.intervalMs ?? 2000;
  const events = forgetOnDisconnect(opts);

  const kick = connectionCutter(opts);

  const { dropGoneServers, pruned } = pruneOnReconnect(opts);

  const kickUser = async (signPub: string, reason: string) => {
    await Promise.all(opts.sessions.forUser(signPub).map((s) => kick(s, reason)));
  };

  const rooms = new RoomIndex();
  const index = (signPub: string, roomIds: string[]) => rooms.set(signPub, roomIds);

  const reconcileUser = (signPub: string, viaAccess = false) =>
    reconcile(opts, { index, kick, kickUser }, signPub, viaAccess);

  let running = true;
  let pass: Promise<void> = Promise.resolve();
  // What the next pass re-reads: the users named by feed events and new
  // sessions, or everyone. Set while a pass runs, they earn one more pass:
  // the change may have come after that pass read the user it is about.
  // The value is `viaAccess` (see reconcileUser): true for a user only marked
  // by an admission; a feed event, a room change or a failed re-check about
  // the same user makes it a fresh read.
  const dirty = new Map<string, boolean>();
  const dirtyRooms = new Set<string>();
  let allDirty = true;
  let lastFull = 0;
  let targetedSinceFull = false;
  let wake: (() => void) | null = null;
  const sleep = () =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        allDirty = true;
        done();
      }, interval);
      function done() {
        clearTimeout(timer);
        wake = null;
        resolve();
      }
      wake = done;
    });
  const markAll = () => {
    allDirty = true;
    wake?.();
  };
  const markUser = (signPub: string) => {
    dirty.set(signPub, false);
    // A steady stream of user changes keeps the loop from ever sleeping, so
    // the backstop's timer never fires: count it as targeted work, which
    // forces the full pass once an interval has gone by.
    targetedSinceFull = true;
    wake?.();
  };
  const markRoom = (roomId: string) => {
    dirtyRooms.add(roomId);
    wake?.();
  };
  // A changed room's users: those who held it (removed or deleted) and its
  // members now (added). A store that cannot say makes it a full pass.
  const roomsToUsers = async () => {
    targetedSinceFull = true;
    const ids = [...dirtyRooms];
    dirtyRooms.clear();
    for (const id of ids) {
      for (const u of rooms.usersOf(id)) dirty.set(u, false);
      try {
        for (const m of await opts.store.listMembers(id)) dirty.set(m.signPub, false);
      } catch {
        allDirty = true;
      }
    }
  };
  const feed = opts.store.watchChanges((change) => {
    if (change.kind === "user") markUser(change.signPub);
    else if (change.kind === "room") markRoom(change.roomId);
    else markAll();
  });
  const offAdd = opts.sessions.onAdd((session) => {
    if (!dirty.has(session.signPub)) dirty.set(session.signPub, true);
    wake?.();
  });

  const loop = async () => {
    while (running) {
      // Room changes trigger targeted passes, so a steady stream of them must
      // not starve the full backstop pass. A stream of admissions alone does
      // not force it (1,000 at once: a full pass amid them slowed the
      // callout past nats-server's 2 s timeout).
      if (targetedSinceFull && Date.now() - lastFull >= interval) allDirty = true;
      if (!allDirty && dirtyRooms.size > 0) await roomsToUsers();
      // Each user to re-read, and whether via access (an admission only).
      let users: Array<[string, boolean]>;
      if (allDirty) {
        const online = opts.sessions.users();
        users = online.map((u) => [u, false]);
        lastFull = Date.now();
        targetedSinceFull = false;
        dirtyRooms.clear();
        const onlineSet = new Set(online);
        for (const u of rooms.users()) if (!onlineSet.has(u)) index(u, []);
      } else {
        users = [];
        for (const [u, viaAccess] of dirty) {
          if (opts.sessions.forUser(u).length > 0) users.push([u, viaAccess]);
          else index(u, []);
        }
      }
      allDirty = false;
      dirty.clear();
      const run = recheckAll(opts, users, reconcileUser, (signPub) => dirty.set(signPub, false));
      pass = run.then(() => {});
      const failed = await run;
      if (!running) break;
      // After a failure, do not spin on an unavailable store.
      if (failed) await new Promise((r) => setTimeout(r, Math.min(interval, 250)));
      else if (!allDirty && dirty.size === 0 && dirtyRooms.size === 0) await sleep();
    }
  };
  const looping = loop();

  return {
    kickUser,
    /**
     * Starts a reconcile pass now instead of at the next tick, so a member
     * removed through the control plane is cut within one pass; with a room
     * id, of that room's users only (see `roomsToUsers`).
     */
    recheckNow(roomId?: string): void {
      if (roomId === undefined) markAll();
      else markRoom(roomId);
    },
    /** Drops the sessions of servers that no longer answer (also run on every reconnect). */
    dropGoneServers,
    async stop() {
      running = false;
      wake?.();
      offAdd();
      await feed.stop();
      await pass;
      await looping;
      await pruned();
      events.unsubscribe();
    },
  };
}
