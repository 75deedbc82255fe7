/**
 * The unibus client: one identity, one NATS connection (nkey, private inbox,
 * failover across seeds), one control-plane client (signed requests, failover
 * across seeds), and end-to-end encrypted rooms on top.
 *
 * @module
 */

import { type Deferred, deferred } from "../platform/mod.ts";
import type { NatsConnection, Subscription as NatsSubscription } from "@nats-io/transport-node";
import { inboxPrefixFor } from "../auth/acl.ts";
import { utf8 } from "../e2e/bytes.ts";
import type { RoomPolicy } from "../e2e/membership.ts";
import { isServerNotice, REFRESH_NOTICE_SUFFIX, ROOM_NOTICE_SUFFIX } from "../notices.ts";
import type { Identity } from "../identity/identity.ts";
import type { DialPacing } from "./dial_pacing.ts";
import { DurablePublisher } from "./durable_publish.ts";
import { openBlob, sealBlob } from "./blobs.ts";
import { RoomPublisher } from "./publisher.ts";
import { ReplyInbox } from "./reply_inbox.ts";
import { lastOf, readRoomHistory } from "./history.ts";
import { dialClient, watchConnection } from "./connect.ts";
import { MembershipAdmin } from "./membership_admin.ts";
import { isReplySubjectOf, isRoomId, requireSubject } from "./refs.ts";
import { subscribeToRoom } from "./receiving.ts";
import type { ControlPlaneClient, RoomView, SealedKeyView } from "./control_plane.ts";
import type { ReceiveState } from "./receive_state.ts";
import {
  ClosedError,
  ControlPlaneError,
  MembershipVerificationError,
  UnibusError,
  UnreachableError,
} from "./errors.ts";
import { type FrameMeta, RoomSession, type RoomStats } from "./room_session.ts";

export type { FrameMeta, RoomStats };

export type * from "./types.ts";
import type {
  BlobRef,
  ClientErrorEvent,
  ClientFailure,
  ConnectOptions,
  HistoryOptions,
  RoomInfo,
  RoomRef,
  RoomSubscription,
} from "./types.ts";

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
  const { nc, control, state, pacing } = await dialClient(opts);
  return new UnibusClient(opts.identity, nc, control, state, pacing, opts.onError);
}

type RoomHandler = (meta: FrameMeta, plaintext: Uint8Array) => void;

/** A room's one NATS subscription and the handlers it feeds. */
interface RoomReceiver {
  sub: NatsSubscription;
  handlers: Set<RoomHandler>;
  drained(): Promise<void>;
}

/**
 * A connected unibus client. Create it with {@linkcode connect}.
 */
export class UnibusClient {
  readonly identity: Identity;
  readonly #nc: NatsConnection;
  readonly #control: ControlPlaneClient;
  #rooms = new Map<string, RoomSession>();
  #loading = new Map<string, Promise<RoomSession>>();
  /** Publishing and its batches (publisher.ts). */
  readonly #publisher: RoomPublisher;
  #connected = true;
  #closed = false;
  #refreshing: Promise<void> | null = null;
  #refreshNext: Promise<void> | null = null;
  #reconnected: Deferred<void> | null = null;
  /** Where this client's requests get their replies (reply_inbox.ts). */
  readonly #replies: ReplyInbox;
  /** Rooms' membership: creating, adding, removing, keys (membership_admin.ts). */
  readonly #admin: MembershipAdmin;
  /**
   * Per room id: its one NATS subscription and the handlers it feeds, ended
   * when this client leaves or loses the room. One per room, because a
   * packet is opened once: a second subscription opening the same packet
   * would find its index already passed and drop it as a replay.
   */
  #receivers = new Map<string, RoomReceiver>();

  readonly #state: ReceiveState | null;
  readonly #pacing: DialPacing | null;
  readonly #onError: ((event: ClientErrorEvent) => void) | undefined;
  /** Failures already warned about on stderr (no handler): kind and room. */
  #warned = new Set<string>();
  /** Publishes to persisted rooms until stored (lib/client/durable_publish.ts). */
  readonly #durable: DurablePublisher;

  constructor(
    identity: Identity,
    nc: NatsConnection,
    control: ControlPlaneClient,
    receiveState: ReceiveState | null = null,
    pacing: DialPacing | null = null,
    onError?: (event: ClientErrorEvent) => void,
  ) {
    this.identity = identity;
    this.#onError = onError;
    receiveState?.onWriteError((error) =>
      this.#failed({ room: null, what: "receive-state-write", error })
    );
    this.#nc = nc;
    this.#control = control;
    this.#state = receiveState;
    this.#pacing = pacing;
    this.#durable = new DurablePublisher(nc, inboxPrefixFor(identity.signPubHex));
    this.#replies = new ReplyInbox(nc, identity.signPubHex);
    this.#publisher = new RoomPublisher({
      nc,
      durable: this.#durable,
      ensureOpen: () => this.#ensureOpen(),
      known: (ref) => this.#known(ref),
      room: (ref) => this.room(ref),
      reload: (id) => this.#reload(id),
    });
    this.#admin = new MembershipAdmin({
      identity,
      control,
      ensureOpen: () => this.#ensureOpen(),
      room: (ref) => this.room(ref),
      reload: (id) => this.#reload(id),
      adopt: (session) => void this.#rooms.set(session.roomId, session),
      newSession: (view, keys) => this.#newSession(view, keys),
      forget: (id) => this.#forget(id),
      refreshSession: () => this.refreshSession(),
    });
    receiveState?.source(() =>
      new Map([...this.#rooms].map(([id, session]) => [id, session.exportReceive()]))
    );
    watchConnection(nc, {
      down: () => this.#connected = false,
      up: () => {
        this.#connected = true;
        this.#reconnected?.resolve();
      },
      refusedForGood: (error) => this.#failed({ room: null, what: "reconnect-refused", error }),
      // Move now, while the node still answers, rather than when it closes
      // this connection: its lame duck closes the clients left after a
      // grace, one every second or less, and a publish in flight at that
      // moment waits out a reconnect. The refresh dials another node at once
      // (this one accepts no one new) and catches up on room notices missed
      // in between, as after any re-authentication.
      lameDuck: () => {
        if (this.#closed) return;
        this.refreshSession().catch((error) =>
          this.#failed({ room: null, what: "refresh-session", error })
        );
      },
    });
    // The server's side of a membership change: when this identity gains
    // rights, it says so here; the client's side is to re-authenticate.
    // Only the server's own notices count: JetStream's answers can be aimed
    // here by any member of a persisted room (lib/notices.ts).
    nc.subscribe(`${inboxPrefixFor(identity.signPubHex)}.${REFRESH_NOTICE_SUFFIX}`, {
      callback: (_err, msg) => {
        if (!isServerNotice(msg?.headers)) return;
        this.refreshSession().catch((error) =>
          this.#failed({ room: null, what: "refresh-session", error })
        );
      },
    });
    // A room changed (a member came or went, so a new epoch began): learn it
    // now, so that this client stops sending under the previous epoch's key.
    nc.subscribe(`${inboxPrefixFor(identity.signPubHex)}.${ROOM_NOTICE_SUFFIX}`, {
      callback: (_err, msg) => {
        if (!isServerNotice(msg?.headers)) return;
        const id = msg?.string();
        if (id && this.#rooms.has(id)) this.#reload(id).catch((err) => this.#lostRoom(id, err));
      },
    });
  }

  /** The underlying NATS connection (for plain NATS use alongside rooms). */
  get nats(): NatsConnection {
    return this.#nc;
  }

  /** The control plane client (signed requests). */
  get control(): ControlPlaneClient {
    return this.#control;
  }

  /** The NATS server this client is attached to ("host:port"), or null while disconnected. */
  connectedServer(): string | null {
    return this.isConnected() ? this.#nc.getServer() : null;
  }

  /** True while the NATS connection is up. */
  isConnected(): boolean {
    return this.#connected && !this.#nc.isClosed();
  }

  #ensureOpen(): void {
    if (this.#closed) throw new ClosedError();
  }

  /**
   * Re-authenticates the NATS connection so that it carries the current ACL.
   * NATS fixes permissions when a connection authenticates: after joining a
   * room, a client must refresh before it can use the room's subject.
   * Subscriptions survive the refresh.
   */
  refreshSession(): Promise<void> {
    this.#ensureOpen();
    // A refresh under way may have authenticated before the change this
    // caller wants to see (a server notice started it a moment earlier):
    // sharing it would hand back a connection without the new room, whose
    // subscription the server then refuses for good. So a caller that finds
    // one running gets the next one, which starts when it ends; every caller
    // meanwhile shares that next one, so the cycles stay at two.
    if (this.#refreshing) {
      // The running refresh's failure belongs to its own callers; the next
      // one starts either way.
      this.#refreshNext ??= this.#refreshing.catch(() => {}).then(() => {
        this.#refreshNext = null;
        return this.refreshSession();
      });
      return this.#refreshNext;
    }
    this.#refreshing = (async () => {
      try {
        // reconnect() only starts the cycle: wait for the new, re-authenticated
        // connection before anything relies on its permissions.
        const back = deferred<void>();
        this.#reconnected = back;
        const timer = setTimeout(
          () => back.reject(new UnreachableError("the session did not come back within 10 s")),
          10_000,
        );
        try {
          this.#pacing?.immediateOnce();
          await this.#nc.reconnect();
          await back.promise;
        } finally {
          clearTimeout(timer);
          this.#reconnected = null;
        }
        await this.#nc.flush();
        await this.#reloadChanged();
      } finally {
        this.#refreshing = null;
      }
    })();
    return this.#refreshing;
  }

  // Room notices sent while the connection was down are lost, so after a
  // reconnect every room held is checked against the server's list (one
  // request) and reloaded (two requests and a log verification) when it
  // changed, left the list, or still lacks its current epoch's key. Reloading
  // every room held made each refresh, so each createRoom, cost O(rooms
  // held): 200 ms for an admin of 12 rooms (docs/benchmarks.md). A list
  // that fails reloads them all.
  async #reloadChanged(): Promise<void> {
    const held = [...this.#rooms];
    if (held.length === 0) return;
    // Every change starts the next epoch (protocol.md §2.4), so an epoch
    // names the log's head; the summaries carry no log to compare.
    const listed = await this.#control.listRoomSummaries().then(
      (rooms) => new Map(rooms.map((r) => [r.id, r.epoch])),
      () => new Map<string, number>(),
    );
    const stale = held.filter(([id, s]) =>
      listed.get(id) !== s.state.epoch || (s.state.policy.encrypt && !s.keyFor(s.state.epoch))
    );
    await Promise.all(
      stale.map(([id]) =>
        this.#reload(id).catch((error) => this.#failed({ room: id, what: "reload", error }))
      ),
    );
  }

  // The control plane no longer shows us the room (deleted, or we left or
  // were removed): end its subscriptions here rather than let the next
  // reconnect re-subscribe to a subject the ACL no longer grants.
  #lostRoom(id: string, err: unknown): void {
    if (err instanceof ControlPlaneError && err.status === 404) this.#forget(id);
    else this.#failed({ room: id, what: "reload", error: err });
  }

  // A failure nobody awaits: to the program's onError, else one stderr line
  // per kind and room, so that it is seen without flooding.
  #failed(event: { room: string | null; what: ClientFailure; error: unknown }): void {
    const error = event.error instanceof Error ? event.error : new Error(String(event.error));
    if (this.#onError) {
      try {
        this.#onError({ room: event.room, what: event.what, error });
      } catch { /* the program's handler failing must not stop the client */ }
      return;
    }
    const key = `${event.what}:${event.room ?? ""}`;
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    console.error(
      `unibus client: ${event.what} failed${event.room ? ` for room ${event.room}` : ""}: ` +
        error.message,
    );
  }

  #forget(id: string): void {
    this.#receivers.get(id)?.sub.unsubscribe();
    this.#receivers.delete(id);
    this.#rooms.delete(id);
    this.#state?.forget(id);
  }

  // A room's session as this client first loads it: with the replay window
  // the previous process saved for it, if there is a state file.
  #newSession(view: RoomView, keys: SealedKeyView[]): RoomSession {
    const session = new RoomSession(this.identity, view, keys);
    const saved = this.#state?.room(view.id);
    if (saved) session.importReceive(saved);
    return session;
  }

  async #reload(id: string): Promise<RoomSession> {
    const [view, keys] = await Promise.all([this.#control.getRoom(id), this.#control.getKeys(id)]);
    let session = this.#rooms.get(id);
    if (session) session.update(view, keys);
    else {
      session = this.#newSession(view, keys);
      this.#rooms.set(id, session);
    }
    await this.#admin.ensureCurrentKey(session);
    return session;
  }

  /** The verified session of a room, loading it on first use. */
  async room(ref: RoomRef): Promise<RoomSession> {
    this.#ensureOpen();
    const key = typeof ref === "string" ? ref : ref.id;
    const known = this.#known(ref);
    if (known) return known;
    let loading = this.#loading.get(key);
    if (!loading) {
      loading = (async () => {
        const id = isRoomId(key)
          ? key
          : (await this.#control.getRoomBySubject(requireSubject(key))).id;
        const session = this.#rooms.get(id) ?? await this.#reload(id);
        // The subject a caller named is part of what it trusts: a server that
        // answers with another room (one the caller is also in) would
        // redirect its messages to other readers.
        if (!isRoomId(key) && session.subject !== key) {
          this.#rooms.delete(id);
          throw new MembershipVerificationError(
            `the server answered for subject ${key} with a room on ${session.subject}`,
          );
        }
        return session;
      })();
      this.#loading.set(key, loading);
      // The load's failure reaches whoever awaits `loading`; this chain only
      // clears the entry.
      loading.finally(() => this.#loading.delete(key)).catch(() => {});
    }
    return await loading;
  }

  /**
   * Creates a room on `subject` with this identity as its first admin, and
   * refreshes the session so the new subject is usable at once.
   *
   * @example
   * ```ts
   * const room = await client.createRoom("agent.scout.in", { encrypt: true, sign: true, persist: false });
   * ```
   */
  createRoom(
    subject: string,
    policy: RoomPolicy = { encrypt: true, sign: true, persist: false },
    opts: { members?: string[] } = {},
  ): Promise<RoomInfo> {
    return this.#admin.createRoom(subject, policy, opts);
  }

  /**
   * Adds a member (by Ed25519 public key, hex) and rotates the room to a new
   * epoch whose key is sealed to every member, the new one included. The new
   * member's key-exchange key is taken from the directory only after its
   * binding signature verifies: a server that swaps it is caught here.
   */
  addMember(ref: RoomRef, signPub: string, role: "admin" | "member" = "member"): Promise<RoomInfo> {
    return this.#admin.addMember(ref, signPub, role);
  }

  /**
   * Adds several members in one pass: their directory entries are fetched
   * and their kex bindings checked up front, then ONE signed change names
   * them all (protocol.md §2.4, v2; in chunks of `MAX_CHANGE_MEMBERS`
   * beyond that), starting one epoch whose ONE new key is sealed to every
   * member in one pass.
   *
   * @example
   * ```ts
   * await client.addMembers(room, [bobHex, { signPub: carolHex, role: "admin" }]);
   * ```
   */
  addMembers(
    ref: RoomRef,
    members: Array<string | { signPub: string; role?: "admin" | "member" }>,
  ): Promise<RoomInfo> {
    return this.#admin.addMembers(ref, members);
  }

  /**
   * Removes a member and rotates the room: the new epoch's key is sealed only
   * to those who remain, so the removed member cannot read what follows.
   */
  removeMember(ref: RoomRef, signPub: string): Promise<RoomInfo> {
    return this.#admin.removeMember(ref, signPub);
  }

  /**
   * Leaves a room on this identity's own authority (no admin's consent): a
   * `remove` change naming itself, signed by itself. The server applies it
   * like a removal, so this client's connection loses the room's subject,
   * and an admin who stays rotates to a new epoch whose key this identity
   * never receives (this client does not make that key: a leaver holding the
   * next key would defeat the rotation). The room's subscriptions end.
   * The last admin cannot leave (409 `last_admin`): add another admin or
   * delete the room.
   *
   * @example
   * ```ts
   * await client.leave("agent.scout.in");
   * ```
   */
  leave(ref: RoomRef): Promise<void> {
    return this.#admin.leave(ref);
  }

  /**
   * Shares the keys of earlier epochs with a current member (admins only), so
   * that a member who joined later can read the room's history from before
   * its join. Without this, a new member reads from its join onward.
   * Resolves with the epochs shared.
   */
  shareHistory(ref: RoomRef, signPub: string): Promise<number[]> {
    return this.#admin.shareHistory(ref, signPub);
  }

  /** Deletes a room (admins only); its stream and blobs go with it. */
  deleteRoom(ref: RoomRef): Promise<void> {
    return this.#admin.deleteRoom(ref);
  }

  /** The rooms this identity belongs to (as the server lists them). */
  async listRooms(): Promise<RoomInfo[]> {
    return (await this.#control.listRoomSummaries()).map((v) => ({
      id: v.id,
      subject: v.subject,
      policy: v.policy,
      epoch: v.epoch,
    }));
  }

  /**
   * Publishes a message to a room. Messages published in the same tick go
   * out as one packet with one signature (up to 256 messages or 512 KiB); a
   * lone message is sealed and sent at once. Resolves when the packet was
   * handed to NATS.
   *
   * @example
   * ```ts
   * await client.publish(room, "hello");
   * ```
   */
  publish(ref: RoomRef, data: Uint8Array | string): Promise<void> {
    return this.#publisher.publish(ref, data);
  }

  #known(ref: RoomRef): RoomSession | undefined {
    const key = typeof ref === "string" ? ref : ref.id;
    return isRoomId(key)
      ? this.#rooms.get(key)
      : [...this.#rooms.values()].find((r) => r.subject === key);
  }

  /**
   * Sends a request into a room and waits for one member's reply. The reply
   * is sealed with the room's keys like any room message and goes to this
   * client's private inbox only.
   *
   * @example
   * ```ts
   * const { meta, plaintext } = await client.request("agent.scout.in", "status?");
   * ```
   */
  async request(
    ref: RoomRef,
    data: Uint8Array | string,
    opts: { timeoutMs?: number } = {},
  ): Promise<{ meta: FrameMeta; plaintext: Uint8Array }> {
    this.#ensureOpen();
    // A known room without an await: each one is a turn of the event loop
    // on the round trip.
    const session = this.#known(ref) ?? await this.room(ref);
    const bytes = typeof data === "string" ? utf8(data) : data;
    const { packet: request, replySession } = session.sealRequest(bytes);
    const msg = await this.#replies.exchange(session.wireSubject, request, opts.timeoutMs ?? 5000);
    // A copy: nats.js never rewrites a delivered message's bytes (see
    // subscribe()), but they are a view of a whole socket read, which the
    // frames of a sign-only reply would keep alive in the caller's hands.
    const packet = new Uint8Array(msg.data);
    // The reply's session, signed into its header, must be the one derived
    // from this request: a reply to another request does not fit.
    let r = session.receiveReply(packet, replySession);
    if (r.kind === "stale") {
      await this.#reload(session.roomId);
      r = session.receiveReply(packet, replySession);
    }
    if (r.kind === "delivered") this.#state?.touch();
    if (r.kind !== "delivered") {
      throw new UnibusError(
        "reply_rejected",
        `the reply did not verify (${r.kind === "dropped" ? r.detail : r.kind})`,
      );
    }
    return r.frames[0];
  }

  /**
   * Answers a request received by a subscription handler (`meta.reply` set).
   * The reply is sealed for the room on a lane of its own for that requester.
   */
  async respond(ref: RoomRef, meta: FrameMeta, data: Uint8Array | string): Promise<void> {
    if (!meta.reply) throw new RangeError("this message did not ask for a reply");
    // The reply subject travels outside the signed packet: the requester (or
    // anyone relaying its request) chooses it. Answering wherever it says
    // would let a requester make this member publish into any room this
    // member is in (the ACL allows those subjects, and cannot tell a reply
    // from a message). So a reply goes only under the inbox of the
    // requester the signature proved, which only that requester reads.
    if (!isReplySubjectOf(meta.reply, meta.sender)) {
      throw new UnibusError(
        "reply_refused",
        `refusing to reply to ${JSON.stringify(meta.reply)}: not under the requester's inbox ${
          inboxPrefixFor(meta.sender)
        }.`,
      );
    }
    const session = this.#known(ref) ?? await this.room(ref);
    const bytes = typeof data === "string" ? utf8(data) : data;
    this.#nc.publish(meta.reply, session.sealReply(meta, bytes));
  }

  /**
   * Resolves when everything published so far reached the server, and what
   * went to persisted rooms is stored (rejects naming how many never were).
   */
  async flush(): Promise<void> {
    await this.#publisher.sent();
    await this.#durable.settled();
  }

  /**
   * Subscribes to a room: `handler` gets every message that verifies (sender
   * signature, sender membership of that epoch, never twice, decrypts),
   * in order; everything else is dropped and counted in `stats`.
   *
   * @example
   * ```ts
   * const sub = await client.subscribe(room, (meta, text) => console.log(meta.sender, new TextDecoder().decode(text)));
   * ```
   */
  async subscribe(
    ref: RoomRef,
    handler: (meta: FrameMeta, plaintext: Uint8Array) => void,
  ): Promise<RoomSubscription> {
    this.#ensureOpen();
    const session = await this.room(ref);
    const id = session.roomId;
    let receiver = this.#receivers.get(id);
    if (!receiver) {
      const handlers = new Set<RoomHandler>();
      const { sub, drained } = subscribeToRoom(this.#nc, session, (meta, plaintext) => {
        for (const h of handlers) h(meta, plaintext);
      }, {
        reload: (id) => this.#reload(id),
        failed: (event) => this.#failed(event),
        touch: () => this.#state?.touch(),
        ended: (sub) => {
          if (this.#receivers.get(id)?.sub === sub) this.#receivers.delete(id);
        },
      });
      receiver = { sub, handlers, drained };
      this.#receivers.set(id, receiver);
    }
    // Its own entry, so that the same function subscribed twice is two subscriptions.
    const entry: RoomHandler = (meta, plaintext) => handler(meta, plaintext);
    const mine = receiver;
    mine.handlers.add(entry);
    await this.#nc.flush();
    return {
      stats: session.stats,
      unsubscribe: () => {
        mine.handlers.delete(entry);
        if (mine.handlers.size > 0) return;
        mine.sub.unsubscribe();
        if (this.#receivers.get(id) === mine) this.#receivers.delete(id);
      },
      drained: mine.drained,
    };
  }

  /**
   * Reads a persisted room's stored messages, oldest first, verified and
   * decrypted like live ones (epochs whose keys this identity never received
   * are counted in `stats.noKey`, not delivered). `startSeq` reads from a
   * stream sequence on (e.g. the middle of a long history; the stream's
   * first sequence when absent or older), `limit` stops after that many
   * messages. The stream is read up to its last sequence at the call.
   * Everything is held in memory (`last` bounds it): for long histories use
   * {@linkcode UnibusClient.readHistory}, which streams them.
   *
   * @example
   * ```ts
   * const { messages } = await client.history(room, { last: 100 }); // the newest 100
   * ```
   */
  async history(
    ref: RoomRef,
    opts: HistoryOptions = {},
  ): Promise<{ messages: Array<{ meta: FrameMeta; plaintext: Uint8Array }>; stats: RoomStats }> {
    const last = opts.last ?? Infinity;
    if (last !== Infinity && !(Number.isSafeInteger(last) && last >= 0)) {
      throw new RangeError(`history last must be a whole number >= 0, not ${last}`);
    }
    const { messages, stats } = await this.readHistory(ref, opts);
    return { messages: await lastOf(messages, last), stats };
  }

  /**
   * {@linkcode UnibusClient.history} as a stream: the messages come as they
   * are read and verified, in stream order, with memory bounded whatever the
   * history's length. `stats` counts what has been read so far. Stopping
   * early (`break`) is fine; the gets still in flight are discarded.
   *
   * @example
   * ```ts
   * const { messages, stats } = await client.readHistory(room, { startSeq: 500_000 });
   * for await (const m of messages) console.log(m.meta.sender, m.plaintext.length);
   * console.log(stats.delivered, stats.noKey);
   * ```
   */
  async readHistory(
    ref: RoomRef,
    opts: HistoryOptions = {},
  ): Promise<
    { messages: AsyncGenerator<{ meta: FrameMeta; plaintext: Uint8Array }>; stats: RoomStats }
  > {
    this.#ensureOpen();
    const limit = opts.limit ?? Infinity;
    if (limit !== Infinity && !(Number.isSafeInteger(limit) && limit >= 0)) {
      throw new RangeError(`history limit must be a whole number >= 0, not ${limit}`);
    }
    const startSeq = opts.startSeq ?? 0;
    if (!(Number.isSafeInteger(startSeq) && startSeq >= 0)) {
      throw new RangeError(`history startSeq must be a whole number >= 0, not ${startSeq}`);
    }
    return readRoomHistory(this.#nc, this.identity, await this.room(ref), { limit, startSeq });
  }

  /**
   * Encrypts `bytes` with a fresh key and stores the ciphertext as a blob of
   * the room; share the returned reference inside a room message.
   */
  async putBlob(ref: RoomRef, bytes: Uint8Array): Promise<BlobRef> {
    const session = await this.room(ref);
    const { sealed, key } = sealBlob(session.roomId, bytes);
    const { id } = await this.#control.putBlob(session.roomId, sealed);
    return { id, key, size: bytes.length };
  }

  /** Fetches and decrypts a blob; throws if it was altered. */
  async getBlob(ref: RoomRef, blob: BlobRef): Promise<Uint8Array> {
    const session = await this.room(ref);
    return openBlob(session.roomId, blob, await this.#control.getBlob(blob.id));
  }

  /**
   * Deletes a blob: its uploader may, also after leaving the room (the blob
   * counts against the uploader's quota until then), and so may an admin of
   * its room.
   */
  async deleteBlob(blob: BlobRef | string): Promise<void> {
    await this.#control.deleteBlob(typeof blob === "string" ? blob : blob.id);
  }

  /** Closes the NATS connection and the control-plane client. */
  async close(): Promise<void> {
    if (this.#closed) return;
    // Not flush(): waiting for a stream that is down would hold close() for
    // up to a minute; what is still unacknowledged is not resent after this,
    // and a connection already gone has nothing left to flush.
    await this.#publisher.sent().catch(() => {});
    this.#durable.close();
    this.#closed = true;
    this.#replies.close();
    await this.#nc.close();
    this.#control.close();
    await this.#state?.close();
  }
}
