/**
 * Membership administration for {@linkcode UnibusClient}: creating rooms,
 * adding and removing members (each a signed change on the room's log),
 * leaving, sharing earlier epochs' keys, deleting, and making and sealing
 * each new epoch's key to its members.
 *
 * @module
 */

import { randomBytes } from "node:crypto";
import { fromHex, toBase64, toHex } from "../e2e/bytes.ts";
import {
  applyChange,
  MAX_CHANGE_MEMBERS,
  type MemberEntry,
  type RoomPolicy,
  type RoomState,
  signChange,
} from "../e2e/membership.ts";
import { generateRoomKey, sealRoomKey } from "../e2e/room_key.ts";
import { type Identity, verifyKexBinding } from "../identity/identity.ts";
import type { RoomInfo, RoomRef } from "./types.ts";
import type { ControlPlaneClient, RoomView, SealedKeyView } from "./control_plane.ts";
import { ControlPlaneError, MembershipVerificationError, NotAMemberError } from "./errors.ts";
import { requireSubject } from "./refs.ts";
import type { RoomSession } from "./room_session.ts";

/** What the membership administration needs of its client. */
export interface AdminCore {
  readonly identity: Identity;
  readonly control: ControlPlaneClient;
  /** Throws when the client is closed. */
  ensureOpen(): void;
  /** The verified session of a room, loading it on first use. */
  room(ref: RoomRef): Promise<RoomSession>;
  /** Reads a room again from the control plane. */
  reload(id: string): Promise<RoomSession>;
  /** Makes a new session the client's own. */
  adopt(session: RoomSession): void;
  /** A new session of a room, with its saved replay window. */
  newSession(view: RoomView, keys: SealedKeyView[]): RoomSession;
  /** Drops a room this identity left or lost, and its subscriptions. */
  forget(id: string): void;
  /** Re-authenticates so that the connection carries the current ACL. */
  refreshSession(): Promise<void>;
}

/**
 * The membership side of a client (its public methods are the client's,
 * which delegate here).
 *
 * @example
 * ```ts
 * const admin = new MembershipAdmin(core);
 * await admin.addMember(room, bobHex);
 * ```
 */
export class MembershipAdmin {
  readonly #core: AdminCore;
  #keying = new Map<string, Promise<void>>();

  constructor(core: AdminCore) {
    this.#core = core;
  }

  // An admin who finds the current epoch without a key (its creator crashed
  // between the change and the upload) makes one, so the room never stalls.
  ensureCurrentKey(session: RoomSession): Promise<void> {
    // One at a time per room: a change and its own notice both land here.
    const running = this.#keying.get(session.roomId);
    const next = (running ?? Promise.resolve()).then(() => this.#makeCurrentKey(session));
    // The caller awaits `next` and gets its failure; the queue only orders.
    this.#keying.set(session.roomId, next.catch(() => {}));
    return next;
  }

  async #makeCurrentKey(session: RoomSession): Promise<void> {
    const state = session.state;
    if (!state.policy.encrypt || session.keyFor(state.epoch)) return;
    if (state.members.get(this.#core.identity.signPubHex)?.role !== "admin") return;
    await this.#distributeKey(session, state.epoch).catch(async (err) => {
      if (err instanceof ControlPlaneError && err.status === 409) {
        session.update(
          await this.#core.control.getRoom(session.roomId),
          await this.#core.control.getKeys(session.roomId),
        );
        return;
      }
      throw err;
    });
  }

  async #distributeKey(session: RoomSession, epoch: number): Promise<void> {
    const members = session.state.epochs.get(epoch)!;
    const roomKey = generateRoomKey();
    const keys = [...members.values()].map((m) => ({
      recipient: m.signPub,
      sealed: toBase64(
        sealRoomKey({
          roomId: session.roomId,
          epoch,
          roomKey,
          memberSignPub: fromHex(m.signPub),
          memberKexPub: fromHex(m.kexPub),
          admin: this.#core.identity.signer,
        }),
      ),
    }));
    await this.#core.control.putKeys(session.roomId, epoch, keys);
    session.adoptKey(epoch, roomKey);
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
  async createRoom(
    subject: string,
    policy: RoomPolicy = { encrypt: true, sign: true, persist: false },
    opts: { members?: string[] } = {},
  ): Promise<RoomInfo> {
    this.#core.ensureOpen();
    if (policy.encrypt && !policy.sign) throw new RangeError("an encrypted room is always signed");
    requireSubject(subject);
    const id = toHex(new Uint8Array(randomBytes(16)));
    const me = this.#core.identity;
    // Up to MAX_CHANGE_MEMBERS named in the create change itself (protocol
    // v2 of §2.4: one signature, epoch 0 for all); any beyond in bulk adds.
    const wanted = [...new Set(opts.members ?? [])].filter((m) => m !== me.signPubHex);
    const first = wanted.slice(0, MAX_CHANGE_MEMBERS - 1);
    const adds = await this.#memberEntries(first.map((signPub) => ({ signPub, role: "member" })));
    const change = signChange({
      room: id,
      seq: 0,
      prev: "0".repeat(64),
      op: "create",
      subject,
      policy,
      member: me.signPubHex,
      kex: me.kexPubHex,
      kexSig: me.kexSigHex,
      role: "admin",
      adds,
      epoch: 0,
      by: me.signPubHex,
      at: Date.now(),
    }, me.signer);
    const view = await this.#core.control.createRoom(change);
    const session = this.#core.newSession(view, []);
    this.#core.adopt(session);
    const rest = wanted.slice(first.length);
    // With more members still to add, epoch 0 is passed at once: its key
    // would be sealed for nobody's use, so only the last epoch gets one.
    if (policy.encrypt && rest.length === 0) await this.#distributeKey(session, 0);
    if (rest.length > 0) {
      const info = await this.addMembers(id, rest);
      await this.#core.refreshSession();
      return info;
    }
    await this.#core.refreshSession();
    return { id, subject, policy, epoch: 0 };
  }

  /**
   * The directory's kex binding of each member, checked before it goes into
   * a change: a server that swaps a member's key-exchange key is caught here.
   */
  async #memberEntries(
    list: { signPub: string; role: "admin" | "member" }[],
  ): Promise<MemberEntry[]> {
    const users = await Promise.all(list.map((m) => this.#core.control.getUser(m.signPub)));
    return users.map((user, i) => {
      const signPub = list[i].signPub;
      if (!user.kexPub || !user.kexSig) {
        throw new MembershipVerificationError(`${signPub} has no key-exchange key on record yet`);
      }
      if (!verifyKexBinding(signPub, user.kexPub, user.kexSig)) {
        throw new MembershipVerificationError(
          `the server's key-exchange key for ${signPub} is not signed by that user`,
        );
      }
      return { member: signPub, kex: user.kexPub, kexSig: user.kexSig, role: list[i].role };
    });
  }

  // Signs and posts one change built on the room's current head, rebuilt when
  // another change lands first. `leaving`: the change takes this identity
  // out, so the room is forgotten instead of reloaded (its state and keys
  // are no longer this identity's to read).
  async #change(
    ref: RoomRef,
    build: (session: RoomSession) => Promise<Parameters<typeof signChange>[0]>,
    opts: { leaving?: boolean } = {},
  ) {
    this.#core.ensureOpen();
    for (let attempt = 0;; attempt++) {
      const session = await this.#core.reload((await this.#core.room(ref)).roomId);
      const change = signChange(await build(session), this.#core.identity.signer);
      let view: RoomView | null;
      try {
        // Leaving: after an unknown outcome, a retry's 404 is the leave done.
        view = opts.leaving
          ? (await this.#core.control.postLeave(session.roomId, change), null)
          : await this.#core.control.postChange(session.roomId, change);
      } catch (err) {
        // Someone else changed the room first: rebuild on the new head. Any
        // other refusal (a 409 `last_admin` among them) would only repeat.
        if (
          err instanceof ControlPlaneError && err.status === 409 && err.code === "conflict" &&
          attempt < 3
        ) continue;
        throw err;
      }
      if (view === null) {
        this.#core.forget(session.roomId);
        return session;
      }
      session.update(view, await this.#core.control.getKeys(session.roomId));
      // The new epoch needs a key; ensureCurrentKey makes it unless another
      // admin (or this client's own notice handler) already did.
      await this.ensureCurrentKey(session);
      return session;
    }
  }

  /**
   * Adds a member (by Ed25519 public key, hex) and rotates the room to a new
   * epoch whose key is sealed to every member, the new one included. The new
   * member's key-exchange key is taken from the directory only after its
   * binding signature verifies: a server that swaps it is caught here.
   */
  async addMember(
    ref: RoomRef,
    signPub: string,
    role: "admin" | "member" = "member",
  ): Promise<RoomInfo> {
    const [entry] = await this.#memberEntries([{ signPub, role }]);
    const session = await this.#change(ref, (s) =>
      Promise.resolve({
        room: s.roomId,
        seq: s.state.seq + 1,
        prev: s.state.head,
        op: "add" as const,
        ...entry,
        epoch: s.state.epoch + 1,
        by: this.#core.identity.signPubHex,
        at: Date.now(),
      }));
    return this.#info(session);
  }

  /**
   * Adds several members in one pass: their directory entries are fetched
   * and their kex bindings checked up front, then ONE signed change names
   * them all (protocol.md §2.4, v2; in chunks of {@linkcode MAX_CHANGE_MEMBERS}
   * beyond that), starting one epoch whose ONE new key is sealed to every
   * member in one pass.
   *
   * @example
   * ```ts
   * await client.addMembers(room, [bobHex, { signPub: carolHex, role: "admin" }]);
   * ```
   */
  async addMembers(
    ref: RoomRef,
    members: Array<string | { signPub: string; role?: "admin" | "member" }>,
  ): Promise<RoomInfo> {
    this.#core.ensureOpen();
    const list = members.map((m) =>
      typeof m === "string"
        ? { signPub: m, role: "member" as const }
        : { role: "member" as const, ...m }
    );
    const entries = await this.#memberEntries(list);
    // Fresh state, but no key for the current epoch yet (#reload would make
    // one): it is about to be passed.
    const session = await this.#core.room(ref);
    const [current, keys] = await Promise.all([
      this.#core.control.getRoom(session.roomId),
      this.#core.control.getKeys(session.roomId),
    ]);
    session.update(current, keys);
    let state: RoomState = session.state;
    let view: RoomView | null = null;
    for (let i = 0; i < entries.length; i += MAX_CHANGE_MEMBERS) {
      const chunk = entries.slice(i, i + MAX_CHANGE_MEMBERS);
      const base = {
        room: state.roomId,
        seq: state.seq + 1,
        prev: state.head,
        op: "add" as const,
        epoch: state.epoch + 1,
        by: this.#core.identity.signPubHex,
        at: Date.now(),
      };
      // One member: the v1 change, byte for byte what older peers verify.
      const change = signChange(
        chunk.length === 1 ? { ...base, ...chunk[0] } : { ...base, adds: chunk },
        this.#core.identity.signer,
      );
      view = await this.#core.control.postChange(state.roomId, change);
      // The next change builds on this one, checked locally by the same
      // rules as the log; the whole log is verified once, at the end.
      state = applyChange(state, change);
    }
    if (view) {
      session.update(view, await this.#core.control.getKeys(session.roomId));
      await this.ensureCurrentKey(session);
    }
    return this.#info(session);
  }

  /**
   * Removes a member and rotates the room: the new epoch's key is sealed only
   * to those who remain, so the removed member cannot read what follows.
   */
  async removeMember(ref: RoomRef, signPub: string): Promise<RoomInfo> {
    return this.#info(await this.#remove(ref, signPub));
  }

  // A removal signed by this identity: of another member (as an admin), or
  // of itself (leaving).
  #remove(ref: RoomRef, member: string, opts: { leaving?: boolean } = {}): Promise<RoomSession> {
    return this.#change(ref, (s) =>
      Promise.resolve({
        room: s.roomId,
        seq: s.state.seq + 1,
        prev: s.state.head,
        op: "remove" as const,
        member,
        epoch: s.state.epoch + 1,
        by: this.#core.identity.signPubHex,
        at: Date.now(),
      }), opts);
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
  async leave(ref: RoomRef): Promise<void> {
    await this.#remove(ref, this.#core.identity.signPubHex, { leaving: true });
  }

  /**
   * Shares the keys of earlier epochs with a current member (admins only), so
   * that a member who joined later can read the room's history from before
   * its join. Without this, a new member reads from its join onward.
   * Resolves with the epochs shared.
   */
  async shareHistory(ref: RoomRef, signPub: string): Promise<number[]> {
    const session = await this.#core.reload((await this.#core.room(ref)).roomId);
    const member = session.state.members.get(signPub);
    if (!member) throw new NotAMemberError(`${signPub} is not a member of room ${session.roomId}`);
    const shared: number[] = [];
    for (const epoch of session.keyEpochs) {
      if (session.state.epochs.get(epoch)?.has(signPub)) continue; // it has these already
      const roomKey = session.keyFor(epoch)!;
      const sealed = toBase64(sealRoomKey({
        roomId: session.roomId,
        epoch,
        roomKey,
        memberSignPub: fromHex(signPub),
        memberKexPub: fromHex(member.kexPub),
        admin: this.#core.identity.signer,
      }));
      try {
        await this.#core.control.putKeys(session.roomId, epoch, [{ recipient: signPub, sealed }]);
        shared.push(epoch);
      } catch (err) {
        if (!(err instanceof ControlPlaneError && err.status === 409)) throw err;
      }
    }
    return shared;
  }

  /** Deletes a room (admins only); its stream and blobs go with it. */
  async deleteRoom(ref: RoomRef): Promise<void> {
    const session = await this.#core.room(ref);
    await this.#core.control.deleteRoom(session.roomId);
    this.#core.forget(session.roomId);
  }

  #info(s: RoomSession): RoomInfo {
    return { id: s.roomId, subject: s.subject, policy: s.state.policy, epoch: s.state.epoch };
  }
}
