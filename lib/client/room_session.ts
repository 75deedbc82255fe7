/**
 * One room's end-to-end state inside a client: the membership its signed log
 * proves, the epoch keys sealed to this identity, this client's sending chain
 * and the receiving chains of every sender session it has heard. No network
 * here: client.ts feeds it views and packets.
 *
 * @module
 */

import { randomBytes } from "node:crypto";
import { wireSubject } from "../auth/acl.ts";
import { fromBase64, fromHex, toBase64, toHex } from "../e2e/bytes.ts";
import { changeHash, MembershipError, type RoomState, verifyLog } from "../e2e/membership.ts";
import {
  decodePacket,
  encodePacket,
  openPacket,
  PacketError,
  PacketVersionError,
  replySessionFor,
} from "../e2e/packet.ts";
import {
  Chain,
  initialChainKey,
  MAX_HISTORY_SKIP,
  MAX_SKIP,
  RatchetPassedError,
} from "../e2e/ratchet.ts";
import { openRoomKey, RoomKeyError } from "../e2e/room_key.ts";
import type { Identity } from "../identity/identity.ts";
import type { RoomView, SealedKeyView } from "./control_plane.ts";
import { MembershipVerificationError, NotAMemberError, RoomKeyUnavailableError } from "./errors.ts";

/** Where a delivered message came from; every field is authenticated. */
export interface FrameMeta {
  roomId: string;
  subject: string;
  /** The sender's Ed25519 public key (hex), verified by signature and membership. */
  sender: string;
  epoch: number;
  /** The sender session (hex): one per client process and room. */
  session: string;
  index: number;
  encrypted: boolean;
  /**
   * The sender's clock when it sealed the packet (ms since the Unix epoch),
   * signed with it; null for a plain room's message, which carries none.
   */
  sentAt: number | null;
  /**
   * The stream sequence of a message read from a persisted room's history;
   * null for a message received live (it comes from the subject, not the
   * stream).
   */
  seq: number | null;
  /** Set when the sender asked for a reply: answer with `client.respond(room, meta, data)`. */
  reply?: string;
}

/** Counters of what was delivered and what was dropped, and why. */
export interface RoomStats {
  delivered: number;
  /** Same (epoch, sender, session, index) twice, or out of order. */
  replayed: number;
  /** Validly signed by someone who is not a member of that epoch. */
  nonMember: number;
  /** Malformed, truncated, wrongly signed, or failing decryption. */
  invalid: number;
  /** For an epoch whose key this client does not have. */
  noKey: number;
  /** A packet of another protocol version (an older client's "UBP1"). */
  version: number;
}

/** What {@linkcode RoomSession.receive} made of a packet. */
export type ReceiveResult =
  | { kind: "delivered"; frames: Array<{ meta: FrameMeta; plaintext: Uint8Array }> }
  | { kind: "dropped"; reason: keyof Omit<RoomStats, "delivered">; detail: string }
  /** The packet is for an epoch newer than this state: refresh, then call again. */
  | { kind: "stale"; epoch: number };

const MAX_RECEIVE_CHAINS = 4096;
/** Sender sessions kept per sender: one member cannot push everyone else's chains out. */
const MAX_SESSIONS_PER_SENDER = 64;
/** How far ahead of the known epoch a member's packet may be before it is dropped. */
const MAX_EPOCH_LEAD = 16;
/**
 * How far a sender's clock may lag this receiver's before its live packets
 * are taken for ones sent before this receiver started (protocol.md §2.9).
 * Small on purpose: packets sent up to this long before a restart can be
 * replayed to a receiver without a persisted state. A sender whose clock lags
 * more loses only its packets of the first moments after the receiver starts.
 */
export const LIVE_SKEW_MS = 2000;
/**
 * How far ahead of this receiver's clock a live packet's signed send time may
 * be (protocol.md §2.9). Without a bound, a member could sign packets dated
 * far in the future and replay them to any receiver that restarts without a
 * state file, since they would always look sent after its start. 30 s is the
 * clock window the control plane already asks of every client.
 */
export const LIVE_FUTURE_MS = 30_000;

/** A room's receiving positions, as persisted across restarts (lib/client/receive_state.ts). */
export interface ReceiveSnapshot {
  /**
   * Receiving chains, oldest first: `id` is "epoch/sender hex/session hex";
   * `at` is the next packet index of an encrypted chain (with `ck`, its
   * chain key, base64) or the last accepted packet index of a sign-only one;
   * `frame` the next frame index (protocol v2: frames are numbered apart
   * from packets; absent, 0).
   */
  chains: Array<{ id: string; at: number; ck?: string; frame?: number }>;
  /** Chains closed for good (their old packets are replays). */
  retired: string[];
}

const CHAIN_ID = /^(0|[1-9]\d{0,9})\/[0-9a-f]{64}\/[0-9a-f]{32}$/;

interface SendLane {
  epoch: number;
  session: Uint8Array;
  chain: Chain | null;
  /** Next packet index (sign-only rooms; encrypted ones count in the chain). */
  nextPacket: number;
  nextFrame: number;
}

/** What a receiver remembers of one (epoch, sender, session). */
interface ReceiveLane {
  /** Encrypted rooms: positioned after the last accepted packet. */
  chain: Chain | null;
  /** Last accepted packet index (-1: none yet). */
  lastPacket: number;
  /** Frame indices below this were delivered or skipped. */
  nextFrame: number;
}
const MAX_RETIRED_CHAINS = 65_536;

/**
 * The E2E state of one room for one identity.
 *
 * @example
 * ```ts
 * const room = new RoomSession(identity, view, keys);
 * const packet = room.seal([new TextEncoder().encode("hello")]);
 * ```
 */
export class RoomSession {
  readonly roomId: string;
  /** The room's subject, its name for people. */
  readonly subject: string;
  /**
   * The NATS subject its packets travel on: the subject, or for a persisted
   * room `$UNIBUS.ROOM.<id>` (lib/auth/acl.ts `wireSubject`). The policy is
   * fixed at creation, so this never changes.
   */
  wireSubject: string;
  #me: Identity;
  #meHex: string;
  #state!: RoomState;
  #keys = new Map<number, Uint8Array>();
  #session = new Uint8Array(randomBytes(16));
  #broadcast: SendLane | null = null;
  #answered = new Set<string>();
  #receive = new Map<string, ReceiveLane>();
  #retired = new Set<string>();
  #perSender = new Map<string, string[]>();
  #history = false;
  // Live packets signed earlier than this are from before this session
  // existed (nothing was subscribed then): replays (protocol.md §2.9).
  #horizon = Date.now() - LIVE_SKEW_MS;
  #view!: RoomView;
  #sealed: SealedKeyView[] = [];
  readonly stats: RoomStats = {
    delivered: 0,
    replayed: 0,
    nonMember: 0,
    invalid: 0,
    noKey: 0,
    version: 0,
  };

  /**
   * `from` (what {@linkcode RoomSession.forHistory} passes): a session of
   * this room whose verified state and opened keys are taken as they are,
   * instead of verifying `view`'s log and opening `keys` a second time.
   */
  constructor(me: Identity, view: RoomView, keys: SealedKeyView[], from?: RoomSession) {
    this.roomId = view.id;
    this.subject = view.subject;
    this.wireSubject = view.subject;
    this.#me = me;
    this.#meHex = me.signPubHex;
    if (from === undefined) this.update(view, keys);
    else {
      if (from.roomId !== view.id) throw new Error("view is for another room");
      this.#state = from.#state;
      this.wireSubject = from.wireSubject;
      this.#view = from.#view;
      this.#sealed = from.#sealed;
      this.#keys = new Map(from.#keys);
    }
  }

  /** The verified state (members per epoch, policy, current epoch). */
  get state(): RoomState {
    return this.#state;
  }

  /** This client's sending session id (hex). */
  get session(): string {
    return toHex(this.#session);
  }

  /** The epochs whose keys this client holds. */
  get keyEpochs(): number[] {
    return [...this.#keys.keys()].sort((a, b) => a - b);
  }

  /**
   * Takes a fresh view and key list from the control plane. The view is only
   * trusted as far as its signed log goes: a member the server lists but the
   * log does not prove is an attack, reported as such.
   */
  update(view: RoomView, keys: SealedKeyView[]): void {
    if (view.id !== this.roomId) throw new Error("view is for another room");
    let state: RoomState;
    try {
      state = verifyLog(view.id, view.changes);
    } catch (err) {
      if (err instanceof MembershipError) {
        throw new MembershipVerificationError(`room ${view.id}: ${err.message}`);
      }
      throw err;
    }
    if (state.subject !== view.subject) {
      throw new MembershipVerificationError(`room ${view.id}: server reports another subject`);
    }
    // From the signed log's policy, not the server's word.
    this.wireSubject = wireSubject({ id: view.id, subject: state.subject, policy: state.policy });
    const listed = new Set(view.members.map((m) => m.signPub));
    const proven = new Set(state.members.keys());
    const injected = [...listed].filter((m) => !proven.has(m));
    if (injected.length > 0) {
      throw new MembershipVerificationError(
        `room ${view.id}: the server lists members its signed log does not prove: ${
          injected.join(", ")
        }`,
      );
    }
    // The log only grows: a server that serves an older prefix (hiding a
    // removal) or a different history is caught against what we saw before.
    const seen = this.#state as RoomState | undefined;
    if (seen) {
      if (state.seq < seen.seq) {
        throw new MembershipVerificationError(
          `room ${view.id}: the server served membership up to change ${state.seq}, but change ${seen.seq} was already seen`,
        );
      }
      if (changeHash(view.changes[seen.seq]) !== seen.head) {
        throw new MembershipVerificationError(
          `room ${view.id}: the server's membership history differs from the one already seen`,
        );
      }
    }
    this.#state = state;
    this.#view = view;
    this.#sealed = keys;
    for (const k of keys) {
      if (this.#keys.has(k.epoch)) continue;
      const epochMembers = state.epochs.get(k.epoch);
      const sealerOk = epochMembers?.get(k.sealedBy)?.role === "admin" ||
        state.members.get(k.sealedBy)?.role === "admin";
      if (!sealerOk) continue; // not from an admin: ignore, never use
      try {
        this.#keys.set(
          k.epoch,
          openRoomKey({
            envelope: fromBase64(k.sealed),
            roomId: this.roomId,
            epoch: k.epoch,
            adminSignPub: fromHex(k.sealedBy),
            me: this.#me,
          }),
        );
      } catch (err) {
        if (!(err instanceof RoomKeyError)) throw err;
      }
    }
  }

  /** True when this identity is a member of the current epoch. */
  get isMember(): boolean {
    return this.#state.members.has(this.#meHex);
  }

  /** The broadcast sending chain, restarted when the epoch moved. */
  #lane(): SendLane {
    const epoch = this.#state.epoch;
    if (!this.isMember) throw new NotAMemberError(`not a member of room ${this.roomId}`);
    if (!this.#broadcast || this.#broadcast.epoch !== epoch) {
      this.#broadcast = this.#newLane(epoch, this.#session);
    }
    return this.#broadcast;
  }

  #newLane(epoch: number, session: Uint8Array): SendLane {
    let chain: Chain | null = null;
    if (this.#state.policy.encrypt) {
      const key = this.#keys.get(epoch);
      if (!key) {
        throw new RoomKeyUnavailableError(`no key for epoch ${epoch} of room ${this.roomId}`);
      }
      chain = new Chain(
        initialChainKey(key, { roomId: this.roomId, epoch, sender: this.#me.signPub, session }),
      );
    }
    return { epoch, session, chain, nextPacket: 0, nextFrame: 0 };
  }

  // One ratchet step, one AEAD and one signature per packet (protocol v2).
  #encode(l: SendLane, plaintexts: Uint8Array[]): Uint8Array {
    const index = l.chain ? l.chain.index : l.nextPacket++;
    const key = l.chain ? l.chain.next() : null;
    const firstFrame = l.nextFrame;
    l.nextFrame += plaintexts.length;
    const packet = encodePacket(
      {
        roomId: this.roomId,
        epoch: l.epoch,
        session: l.session,
        signer: this.#me.signer,
        encrypted: this.#state.policy.encrypt,
        sentAt: Date.now(),
      },
      { index, firstFrame, key },
      plaintexts,
    );
    key?.fill(0);
    return packet;
  }

  /**
   * Encrypts (or only signs, per policy) a run of messages into one packet.
   * Plain rooms (neither encrypt nor sign) are not sealed: the caller sends
   * the bytes as they are.
   */
  seal(plaintexts: Uint8Array[]): Uint8Array {
    return this.#encode(this.#lane(), plaintexts);
  }

  /**
   * Seals one request; returns the packet and the session (hex) its reply
   * must come on (lib/e2e/packet.ts `replySessionFor`).
   */
  sealRequest(plaintext: Uint8Array): { packet: Uint8Array; replySession: string } {
    const l = this.#lane();
    const index = l.nextFrame;
    const packet = this.#encode(l, [plaintext]);
    return {
      packet,
      replySession: toHex(replySessionFor(this.#me.signPub, l.session, l.epoch, index)),
    };
  }

  /**
   * Seals the one reply to the request `meta` describes, on the session
   * derived from that request, so the requester can tell it answers it.
   * A request is answered at most once.
   */
  sealReply(request: FrameMeta, plaintext: Uint8Array): Uint8Array {
    const id = `${request.epoch}/${request.sender}/${request.session}/${request.index}`;
    if (this.#answered.has(id)) throw new RangeError("this request was already answered");
    this.#answered.add(id);
    if (this.#answered.size > MAX_RETIRED_CHAINS) {
      this.#answered.delete(this.#answered.values().next().value!);
    }
    if (!this.isMember) throw new NotAMemberError(`not a member of room ${this.roomId}`);
    const session = replySessionFor(
      fromHex(request.sender),
      fromHex(request.session),
      request.epoch,
      request.index,
    );
    return this.#encode(this.#newLane(this.#state.epoch, session), [plaintext]);
  }

  /**
   * Authenticates and opens a packet: signature, membership of the sender in
   * the packet's epoch, order (no packet index twice), then decryption.
   */
  receive(bytes: Uint8Array): ReceiveResult {
    return this.#accept(bytes, null);
  }

  /**
   * Authenticates and opens the reply to this client's request: like
   * {@linkcode RoomSession.receive}, and its session must be `replySession`
   * (the one derived from the request, checked before any state is kept).
   * A reply's session carries one packet: it is closed once accepted (a
   * replay of the reply is dropped) and never takes one of the replier's
   * per-sender session slots, which would push the replier's own sending
   * session out after 64 requests and drop its room messages as replays.
   */
  receiveReply(bytes: Uint8Array, replySession: string): ReceiveResult {
    return this.#accept(bytes, replySession);
  }

  #accept(bytes: Uint8Array, replySession: string | null): ReceiveResult {
    let packet;
    try {
      packet = decodePacket(this.roomId, bytes);
    } catch (err) {
      if (err instanceof PacketVersionError) return this.#drop("version", err.message);
      if (err instanceof PacketError) return this.#drop("invalid", err.message);
      throw err;
    }
    const policy = this.#state.policy;
    if (packet.encrypted !== policy.encrypt) {
      return this.#drop("invalid", "packet encryption does not match the room policy");
    }
    const epochMembers = this.#state.epochs.get(packet.epoch);
    if (!epochMembers) {
      // A newer epoch may simply be unknown yet (refetch and retry), but only
      // from someone who is a member now and only a few epochs ahead: a
      // stranger's packet with epoch 2^32-1 must not make us reload.
      const sender = toHex(packet.sender);
      if (
        packet.epoch > this.#state.epoch && packet.epoch <= this.#state.epoch + MAX_EPOCH_LEAD &&
        this.#state.members.has(sender)
      ) {
        return { kind: "stale", epoch: packet.epoch };
      }
      if (packet.epoch > this.#state.epoch && !this.#state.members.has(sender)) {
        return this.#drop("nonMember", `${sender} is not a member`);
      }
      return this.#drop("invalid", `unknown epoch ${packet.epoch}`);
    }
    const sender = toHex(packet.sender);
    if (!epochMembers.has(sender)) {
      return this.#drop("nonMember", `${sender} is not a member of epoch ${packet.epoch}`);
    }
    // Live, a removed member must not keep talking in an epoch it still has
    // the key of; history (written while it was a member) stays readable.
    if (!this.#history && !this.#state.members.has(sender)) {
      return this.#drop("nonMember", `${sender} is no longer a member`);
    }
    // A receiver that restarted has no chain positions for what it heard
    // before (unless restored from its state file): without this, anyone
    // who kept an old packet could replay it as live, and an agent would act
    // on an old instruction again. History is read on purpose and exempt.
    if (!this.#history && (packet.sentAt === null || packet.sentAt < this.#horizon)) {
      return this.#drop(
        "replayed",
        packet.sentAt === null
          ? "untimed packet on a live subject"
          : "signed before this receiver started listening",
      );
    }
    if (!this.#history && packet.sentAt! > Date.now() + LIVE_FUTURE_MS) {
      return this.#drop("replayed", "signed more than 30 s in this receiver's future");
    }
    const session = toHex(packet.session);
    if (replySession !== null) {
      if (session !== replySession) {
        return this.#drop("invalid", "the reply does not answer this request");
      }
      if (packet.index !== 0 || packet.firstFrame !== 0 || packet.count !== 1) {
        return this.#drop("invalid", "a reply is one frame, packet 0 of its session");
      }
    }
    const chainKey = `${packet.epoch}/${sender}/${session}`;
    let lane = replySession === null ? this.#receive.get(chainKey) : undefined;
    if (lane === undefined && this.#retired.has(chainKey)) {
      return this.#drop("replayed", "sender session was retired");
    }
    if (lane === undefined) {
      let chain: Chain | null = null;
      if (policy.encrypt) {
        const key = this.#keys.get(packet.epoch);
        if (!key) return this.#drop("noKey", `no key for epoch ${packet.epoch}`);
        chain = new Chain(
          initialChainKey(key, {
            roomId: this.roomId,
            epoch: packet.epoch,
            sender: packet.sender,
            session: packet.session,
          }),
          0,
          this.#history ? MAX_HISTORY_SKIP : MAX_SKIP,
        );
      }
      lane = { chain, lastPacket: -1, nextFrame: 0 };
    }
    if (replySession === null && !this.#receive.has(chainKey)) this.#track(chainKey, sender, lane);
    // Order, per packet: an index at or below the last accepted one is a
    // replay (or reordered); frame numbers must move forward too, so the
    // (session, index) an application sees is never delivered twice.
    if (packet.index <= lane.lastPacket) {
      return this.#drop("replayed", `packet ${packet.index} already passed`);
    }
    if (packet.firstFrame < lane.nextFrame) {
      return this.#drop("invalid", `frame ${packet.firstFrame} goes back in the session`);
    }
    let mk: Uint8Array | null = null;
    if (lane.chain) {
      try {
        mk = lane.chain.keyFor(packet.index);
      } catch (err) {
        if (err instanceof RatchetPassedError) return this.#drop("replayed", err.message);
        if (err instanceof RangeError) return this.#drop("invalid", err.message);
        throw err;
      }
    }
    // From here the packet's index is spent, whatever its body holds: it
    // was signed by a member, who can only waste its own session this way.
    lane.lastPacket = packet.index;
    lane.nextFrame = packet.firstFrame + packet.count;
    if (replySession !== null) this.#retire(chainKey);
    let frames: Uint8Array[] | null;
    try {
      frames = openPacket(this.roomId, packet, mk);
    } catch (err) {
      if (err instanceof PacketError) return this.#drop("invalid", err.message);
      throw err;
    } finally {
      mk?.fill(0);
    }
    if (frames === null) return this.#drop("invalid", "packet body does not decrypt");
    const out = frames.map((plaintext, j) => ({
      meta: {
        roomId: this.roomId,
        subject: this.subject,
        sender,
        epoch: packet.epoch,
        session,
        index: packet.firstFrame + j,
        encrypted: packet.encrypted,
        sentAt: packet.sentAt,
        seq: null,
      },
      plaintext,
    }));
    this.stats.delivered += out.length;
    return { kind: "delivered", frames: out };
  }

  // Keeps a new receiving chain within the bounds: a sender's own oldest
  // session is evicted past its quota (never someone else's), the oldest of
  // all past the total.
  #track(chainKey: string, sender: string, lane: ReceiveLane): void {
    const mine = this.#perSender.get(sender) ?? [];
    if (mine.length >= MAX_SESSIONS_PER_SENDER) this.#retire(mine.shift()!);
    mine.push(chainKey);
    this.#perSender.set(sender, mine);
    if (this.#receive.size >= MAX_RECEIVE_CHAINS) {
      this.#retire(this.#receive.keys().next().value!);
    }
    this.#receive.set(chainKey, lane);
  }

  // Closes a receiving chain for good: restarting it at CK_0 later would
  // accept its old packets again, so its id is remembered (bounded).
  #retire(chainKey: string): void {
    this.#receive.delete(chainKey);
    this.#retired.add(chainKey);
    if (this.#retired.size > MAX_RETIRED_CHAINS) {
      this.#retired.delete(this.#retired.values().next().value!);
    }
  }

  /** The receiving positions to persist (bounded by the caller). */
  exportReceive(): ReceiveSnapshot {
    const chains: ReceiveSnapshot["chains"] = [];
    for (const [id, lane] of this.#receive) {
      chains.push(
        lane.chain
          ? { id, at: lane.chain.index, ck: toBase64(lane.chain.chainKey), frame: lane.nextFrame }
          : { id, at: lane.lastPacket, frame: lane.nextFrame },
      );
    }
    return { chains, retired: [...this.#retired] };
  }

  /**
   * Restores receiving positions saved by a previous process, so its packets
   * are replays here too. Entries that do not parse are an error: a state
   * file that is not what this library wrote is not trusted in part.
   */
  importReceive(snap: ReceiveSnapshot): void {
    for (const id of snap.retired) {
      if (!CHAIN_ID.test(id)) throw new RangeError(`bad retired chain id ${JSON.stringify(id)}`);
      this.#retire(id);
    }
    for (const c of snap.chains) {
      const frame = c.frame ?? 0;
      if (
        !CHAIN_ID.test(c.id) || !Number.isSafeInteger(c.at) || c.at < -1 ||
        !Number.isSafeInteger(frame) || frame < 0
      ) {
        throw new RangeError(`bad receiving chain ${JSON.stringify(c.id)}`);
      }
      let lane: ReceiveLane = { chain: null, lastPacket: c.at, nextFrame: frame };
      if (c.ck !== undefined) {
        const ck = fromBase64(c.ck);
        if (ck.length !== 32 || c.at < 0) throw new RangeError(`bad chain key for ${c.id}`);
        lane = { chain: new Chain(ck, c.at), lastPacket: c.at - 1, nextFrame: frame };
      }
      this.#track(c.id, c.id.split("/")[1], lane);
      this.#retired.delete(c.id);
    }
  }

  #drop(reason: keyof Omit<RoomStats, "delivered">, detail: string): ReceiveResult {
    this.stats[reason]++;
    return { kind: "dropped", reason, detail };
  }

  /**
   * A receiving-only copy for reading history: same keys and membership,
   * fresh chains, so old frames are not mistaken for replays of live ones.
   */
  forHistory(): RoomSession {
    const copy = new RoomSession(this.#me, this.#view, this.#sealed, this);
    copy.#history = true;
    return copy;
  }

  /** The epoch key, when this client holds it (admins share older epochs with it). */
  keyFor(epoch: number): Uint8Array | undefined {
    return this.#keys.get(epoch);
  }

  /** Records a key this client generated itself. */
  adoptKey(epoch: number, key: Uint8Array): void {
    this.#keys.set(epoch, key);
  }
}
