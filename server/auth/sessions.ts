/**
 * The authenticated data-plane connections this node has admitted, so that a
 * revocation or a membership removal can cut them: NATS fixes a connection's
 * permissions when it authenticates and never re-checks them.
 *
 * @module
 */

import type { UserPermissions } from "../../lib/auth/acl.ts";

/** One admitted connection. */
export interface Session {
  signPub: string;
  /** The nats-server that holds the connection (kick requests go to it). */
  serverId: string;
  /** The connection id on that server. */
  cid: number;
  /** What the connection was granted. */
  permissions: UserPermissions;
  admittedAt: number;
  /** Set once a "refresh your session" notice went out for wider rights. */
  refreshNoticeFor?: string;
}

/** Sessions by user and by connection. */
export class SessionRegistry {
  #byConn = new Map<string, Session>();
  // The same sessions by user: the enforcer asks for one user's sessions for
  // every user it re-checks, and scanning every connection each time made a
  // pass over n users cost n² (1,000 logins at once: a million visits).
  #byUser = new Map<string, Set<Session>>();
  #onAdd = new Set<(session: Session) => void>();

  /**
   * Calls `fn` after each {@linkcode SessionRegistry.add}; returns the
   * unsubscribe function.
   *
   * @example
   * ```ts
   * const off = registry.onAdd((s) => console.log("admitted", s.signPub));
   * off();
   * ```
   */
  onAdd(fn: (session: Session) => void): () => void {
    this.#onAdd.add(fn);
    return () => this.#onAdd.delete(fn);
  }

  /**
   * Records an admitted connection.
   *
   * @example
   * ```ts
   * registry.add({ signPub, serverId, cid: 7, permissions, admittedAt: Date.now() });
   * ```
   */
  add(session: Session): void {
    const key = `${session.serverId}/${session.cid}`;
    this.#forget(key);
    this.#byConn.set(key, session);
    const mine = this.#byUser.get(session.signPub) ?? new Set<Session>();
    this.#byUser.set(session.signPub, mine.add(session));
    for (const fn of this.#onAdd) fn(session);
  }

  /** Forgets a connection (it closed, or was kicked). */
  remove(serverId: string, cid: number): void {
    this.#forget(`${serverId}/${cid}`);
  }

  #forget(key: string): Session | undefined {
    const s = this.#byConn.get(key);
    if (!s) return undefined;
    this.#byConn.delete(key);
    const mine = this.#byUser.get(s.signPub);
    mine?.delete(s);
    if (mine?.size === 0) this.#byUser.delete(s.signPub);
    return s;
  }

  /**
   * Forgets every session held by a server not in `live` (a nats-server
   * that restarted or left: its connections died with it) and returns them.
   *
   * @example
   * ```ts
   * const dropped = registry.retainServers(new Set([nc.info!.server_id]));
   * ```
   */
  retainServers(live: ReadonlySet<string>): Session[] {
    const dropped: Session[] = [];
    for (const [k, s] of this.#byConn) {
      if (!live.has(s.serverId)) dropped.push(this.#forget(k)!);
    }
    return dropped;
  }

  /** Every session of one user. */
  forUser(signPub: string): Session[] {
    return [...this.#byUser.get(signPub) ?? []];
  }

  /** The distinct users with at least one session. */
  users(): string[] {
    return [...this.#byUser.keys()];
  }

  /** How many connections are tracked. */
  get size(): number {
    return this.#byConn.size;
  }
}
