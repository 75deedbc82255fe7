/**
 * Reads and writes of the control-plane buckets, below the store's records:
 * transport failures as store errors, writes whose outcome is unknown, reads
 * through the leader with a replica fallback, and the confirmed reads a
 * login is decided on (each checked against the bucket's RAFT log).
 *
 * @module
 */

import type { MsgRequest } from "@nats-io/jetstream";
import type { KV, KvEntry } from "@nats-io/kv";
import { headers, type NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "../log.ts";
import type { Buckets } from "./kv_buckets.ts";
import {
  checksRevisionAtApply,
  type CurrentRead,
  digestMatches,
  encode,
  FORMAT_FIELD,
  isWrongLastSequence,
  KV_RECORD_FORMAT,
  live,
  MAX_CAS_ATTEMPTS,
  message,
  Raced,
  readFormat,
  unanswered,
} from "./kv_records.ts";
import {
  DamagedRecordError,
  RecordTooNewError,
  StoreError,
  StoreOutcomeUnknownError,
  StoreUnavailableError,
} from "./store.ts";

/** How long a read waits for the bucket's leader before asking this node's replica too. */
const REPLICA_FALLBACK_AFTER_MS = 250;

/**
 * A stream sequence no bucket ever reaches (2^53 - 1): a publish that
 * expects it as a key's last sequence is never stored (see
 * `KvAccess.committedRevision`).
 */
const NO_SUCH_SEQUENCE = String(Number.MAX_SAFE_INTEGER);

/** How often a verified read asks again when the key moved under it (a write raced). */
const MAX_VERIFY_ROUNDS = 3;

/**
 * How long a verified read waits for its direct get once the revision is
 * known, before reading that revision elsewhere: the direct get usually
 * answers within a millisecond of the check (measured: first in 60% of
 * reads), and a replica that does not answer within this is slow or stopped.
 */
const DIRECT_GRACE_MS = 20;

/** How a {@linkcode KvAccess} reads. */
export interface KvAccessOptions {
  log?: Logger;
  /** Whether a read may fall back to this node's replica right now (see `read`). */
  replicaReads: () => boolean | Promise<boolean>;
  /** Per-request timeout of the revision checks. */
  opTimeoutMs: number;
}

/**
 * The buckets' reads and writes for {@linkcode KvStore}.
 *
 * @example
 * ```ts
 * const a = new KvAccess(nc, buckets, { replicaReads: () => false, opTimeoutMs: 2000 });
 * const user = await a.get(a.kv.users, signPub);
 * ```
 */
export class KvAccess {
  #nc: NatsConnection;
  #b: Buckets | null;
  #replicaReads: () => boolean | Promise<boolean>;
  #log?: Logger;
  /** Each bucket's replica-read handle (R3 only), by its leader-read handle. */
  #replicaOf = new Map<KV, KV>();
  /** Each bucket's name, by its leader-read handle (key listings, revision checks). */
  #nameOf = new Map<KV, string>();
  /** Per-request timeout of the revision checks, as of the buckets' handles. */
  #opTimeoutMs: number;

  constructor(nc: NatsConnection, buckets: Buckets, opts: KvAccessOptions) {
    this.#nc = nc;
    this.#b = buckets;
    this.#log = opts.log;
    this.#replicaReads = opts.replicaReads;
    this.#opTimeoutMs = opts.opTimeoutMs;
    const { kv, replicaKv } = buckets;
    for (const k of Object.keys(kv) as (keyof Buckets["kv"])[]) {
      this.#nameOf.set(kv[k], buckets.names[k]);
      if (replicaKv) this.#replicaOf.set(kv[k], replicaKv[k]);
    }
  }

  /** The blob object store. */
  get blobs(): Buckets["blobs"] {
    if (this.#b === null) throw new StoreUnavailableError("store is closed");
    return this.#b.blobs;
  }

  /** Every later call fails with {@linkcode StoreUnavailableError}. */
  close(): void {
    this.#b = null;
  }

  get kv(): Buckets["kv"] {
    if (this.#b === null) throw new StoreUnavailableError("store is closed");
    return this.#b.kv;
  }

  /** Runs a backend call; transport failures become StoreUnavailableError. */
  async io<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.#b === null) throw new StoreUnavailableError("store is closed");
    try {
      return await fn();
    } catch (err) {
      if (err instanceof StoreError || err instanceof Raced) throw err;
      if (isWrongLastSequence(err)) throw new Raced(what);
      throw new StoreUnavailableError(`control-plane KV unavailable (${what}): ${message(err)}`, {
        cause: err,
      });
    }
  }

  /**
   * Runs a write: as `io`, except that a write whose
   * request was sent and never answered (a timeout, or the connection lost
   * meanwhile) throws {@linkcode StoreOutcomeUnknownError}: the stream's
   * leader may have stored it (and a new leader may still commit it), so
   * "unavailable, nothing done" would be a lie. Operations that write in
   * steps turn it back into a plain {@linkcode StoreUnavailableError} where
   * the step was before their commit point (see {@linkcode definitely}).
   */
  async write<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await this.io(what, fn);
    } catch (err) {
      if (
        err instanceof StoreUnavailableError && !(err instanceof StoreOutcomeUnknownError) &&
        unanswered(err.cause)
      ) {
        throw new StoreOutcomeUnknownError(
          `control-plane KV write not acknowledged (${what}): ${message(err.cause)}`,
          { cause: err.cause },
        );
      }
      throw err;
    }
  }

  async get<T>(kv: KV, key: string): Promise<{ value: T; revision: number } | null> {
    return this.parse<T>(kv, key, await this.read(kv, key));
  }

  /** A read entry's value: null when deleted; a {@linkcode DamagedRecordError} when not an object. */
  parse<T>(kv: KV, key: string, e: KvEntry | null): { value: T; revision: number } | null {
    if (!live(e)) return null;
    let value: T;
    try {
      value = e.json<T>();
    } catch {
      throw this.damaged(kv, key, "not JSON");
    }
    if (typeof value !== "object" || value === null) throw this.damaged(kv, key, "not an object");
    const read = readFormat(value);
    if (read.format === null) throw this.damaged(kv, key, `${FORMAT_FIELD} is not a format number`);
    // Fail closed: a newer node wrote what this one may misread (a grant,
    // a member set, a revoke in a shape it does not know), so nothing is
    // decided on it here; a login that needs it is refused, a request
    // answers 503, and a newer node reads it.
    if (read.format > KV_RECORD_FORMAT) throw this.tooNew(kv, key, read.format);
    return { value: read.value, revision: e.revision };
  }

  // Said once here with the record's key: the operator's cue that this node
  // is older than the cluster's data (finish the upgrade).
  tooNew(kv: KV, key: string, format: number): RecordTooNewError {
    const bucket = Object.entries(this.kv).find(([, handle]) => handle === kv)?.[0] ?? "kv";
    const err = new RecordTooNewError(`${bucket}/${key}`, format, KV_RECORD_FORMAT);
    this.#log?.error("control-plane record written by a newer unibus", {
      key: err.key,
      format,
      known: KV_RECORD_FORMAT,
    });
    return err;
  }

  // A record that does not parse or has the wrong shape: said once here with
  // its key (the operator repairs or removes it), unavailable to the caller.
  damaged(kv: KV, key: string, reason: string): DamagedRecordError {
    const bucket = Object.entries(this.kv).find(([, handle]) => handle === kv)?.[0] ?? "kv";
    const err = new DamagedRecordError(`${bucket}/${key}`, reason);
    this.#log?.error("damaged control-plane record", { key: err.key, reason });
    return err;
  }

  /**
   * A read through the bucket's stream leader; at R3, when the leader has
   * not answered within {@linkcode REPLICA_FALLBACK_AFTER_MS} (or failed),
   * also through this node's replica, and the first answer wins.
   *
   * Why: after a node dies, the buckets it led have no leader until RAFT
   * elects one (4–9 s in nats-server 2.10); with leader reads only, every
   * listing and room read on the survivors would answer 503 for that long.
   * A login never reads this way (see `startCurrent`).
   *
   * The price: such a read is not linearizable. A replica may not yet have
   * applied the last committed write, and even the leader's answer can be
   * old: nats-server answers `STREAM.MSG.GET` on whichever server believes
   * it leads the stream, and a leader that was paused or cut off keeps
   * believing so (and answering from its own copy) until it hears of the
   * newer term, up to 10 s later when nothing reaches it. That is fine for
   * what these reads serve (listings, a room's state for a request that
   * then writes: a compare-and-set against a stale revision is refused),
   * never for admission: the reads a login is decided on go through
   * `startCurrent`, which checks every answer against the stream's RAFT
   * log.
   */
  async read(kv: KV, key: string): Promise<KvEntry | null> {
    const what = `get ${key}`;
    const leader = this.io(what, () => kv.get(key));
    const replica = this.#b === null ? undefined : this.#replicaOf.get(kv);
    // Only with a majority alive (see KvStoreOptions.replicaReads): with two
    // of three nodes down, this node's copy is not the cluster's word.
    if (!replica) return await leader;
    leader.catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const slow = new Promise<"slow">((r) =>
      timer = setTimeout(() => r("slow"), REPLICA_FALLBACK_AFTER_MS)
    );
    const first = await Promise.race([
      leader.then(() => "leader" as const, () => "failed" as const),
      slow,
    ]);
    clearTimeout(timer);
    if (first === "leader") return await leader;
    const mayAskReplica = await Promise.resolve(this.#replicaReads()).catch(() => false);
    if (!mayAskReplica) return await leader;
    const fromReplica = this.io(what, () => replica.get(key));
    fromReplica.catch(() => {});
    try {
      return await Promise.any(first === "failed" ? [fromReplica] : [leader, fromReplica]);
    } catch {
      return await leader; // both failed: the leader's error is the one to report
    }
  }

  /**
   * `key`'s revision as the bucket's RAFT group has committed it, at a moment
   * after this call began: 0 when the key has no message.
   *
   * How: a publish to the key's subject that expects a last sequence the key
   * can never have ({@linkcode NO_SUCH_SEQUENCE}). nats-server 2.10 checks a
   * per-subject expectation above the stream's last sequence only when it
   * applies the entry, after RAFT committed it (jetstream_cluster.go
   * processClusteredInboundMsg pre-checks only `seq <= last`; stream.go
   * processJetStreamMsg checks every one), and then refuses it with "wrong
   * last sequence: N", N being the key's last sequence at that point of the
   * log. Nothing is stored, no watcher sees anything, and the stream's
   * sequence is unchanged. A deposed leader that still believes it leads
   * cannot get the entry committed, so it never answers; only the leader of
   * the current term does, after every earlier committed write was applied.
   * With no leader nothing answers and the check times out: the caller fails
   * closed. The cost is one RAFT round of the bucket's group.
   *
   * Before 2.10.6, and from 2.11 on, nats-server pre-checks such an
   * expectation on the leader before proposing, which a deposed leader would
   * answer from its own copy: the check refuses to run on any server but
   * 2.10.6 to 2.10.x (2.10.27 is the one scripts/setup and the artifact
   * pin), so an upgrade fails logins closed and loudly instead of making
   * them quietly stale.
   */
  async committedRevision(kv: KV, key: string): Promise<number> {
    const version = this.#nc.info?.version ?? "";
    if (!checksRevisionAtApply(version)) {
      throw new StoreUnavailableError(
        `cannot confirm a read of ${key} on nats-server ${version || "(unknown)"}: the revision ` +
          "check relies on nats-server 2.10.6 to 2.10.x",
      );
    }
    const h = headers();
    h.set("Nats-Expected-Last-Subject-Sequence", NO_SUCH_SEQUENCE);
    // A second expectation that can never hold either: were the first ever
    // met, the entry would still not be stored.
    h.set("Nats-Expected-Last-Sequence", NO_SUCH_SEQUENCE);
    const subject = `$KV.${this.#nameOf.get(kv)}.${key}`;
    const res = await this.io(
      `revision of ${key}`,
      () =>
        this.#nc.request(subject, new Uint8Array(0), { timeout: this.#opTimeoutMs, headers: h }),
    );
    let body: { error?: { err_code?: number; description?: string }; seq?: number };
    try {
      body = res.json();
    } catch {
      throw new StoreUnavailableError(`revision of ${key}: an answer that is not JSON`);
    }
    const m = body.error?.err_code === 10071
      ? /^wrong last sequence: (\d+)$/.exec(body.error.description ?? "")
      : null;
    if (m) return Number(m[1]);
    if (body.error === undefined) {
      // Cannot happen (no key reaches that sequence); if it ever did, an
      // empty value was stored under the key: say so loudly.
      this.#log?.error("a revision check was stored as a value", { subject, seq: body.seq });
    }
    throw new StoreUnavailableError(
      `revision of ${key}: ${body.error?.description ?? "stored, not refused"}`,
    );
  }

  /**
   * The message at `revision` if it still is `key`'s: a stream sequence
   * names one message, the same on every replica, so any server that has it
   * answers correctly. Asks the leader and this node's replica at once.
   */
  async atRevision(kv: KV, key: string, revision: number): Promise<KvEntry | null> {
    const ask = (handle: KV) =>
      this.io(`get ${key} at ${revision}`, () => handle.get(key, { revision })).then((e) => {
        if (e === null || e.revision !== revision) throw new Error("not there");
        return e;
      });
    const replica = this.#replicaOf.get(kv);
    try {
      return await Promise.any(replica ? [ask(kv), ask(replica)] : [ask(kv)]);
    } catch {
      return null;
    }
  }

  /**
   * A linearizable read: `key`'s value as of a moment after this call began,
   * never older than a write acknowledged before it, on any node, whatever
   * the cluster is doing; `confirmed` rejects with
   * {@linkcode StoreUnavailableError} (the caller fails closed) when the
   * bucket has no leader to confirm it. `guess` is the same read before it
   * is confirmed: usually what `confirmed` resolves to, and enough to start
   * the reads that depend on it, never enough to grant anything.
   *
   * Why: a login must never be admitted after `user revoke` or a room
   * removal has returned. A plain read cannot promise that in a cluster
   * (see `#read`): one was measured to admit a revoked user 2.5-4.1 s after
   * the revoke returned while a leader was paused.
   *
   * How: a direct get (answered by any replica, nats-server picks one at
   * random, and not a JetStream API request, which nats-server refuses while
   * its meta group elects a leader) and `committedRevision` at once. When
   * the direct get has answered by the time the revision is known and the
   * two agree, the value read is the one committed then (a revision names
   * one message). Otherwise (a replica or a deposed leader answered from an
   * old copy, a write raced, or the replica asked is slow or paused) the
   * committed revision itself is read from whichever answers first, the
   * leader or a replica, still racing the direct get; a revision superseded
   * meanwhile is asked for again, a few times at most. At R1 there is one
   * copy and no election, and a plain read already is linearizable: no
   * check.
   */
  startCurrent(kv: KV, key: string): CurrentRead {
    const replica = this.#replicaOf.get(kv);
    if (!replica) {
      const read = this.read(kv, key);
      return { guess: read.catch(() => null), confirmed: read };
    }
    const committed = this.committedRevision(kv, key);
    committed.catch(() => {});
    const direct = this.io(`get ${key}`, () => replica.get(key)).catch(() => null);
    const answered = { yet: false, entry: null as KvEntry | null };
    direct.then((entry) => Object.assign(answered, { yet: true, entry }));
    const confirmed = (async () => {
      let revision = await committed;
      if (!answered.yet) {
        // Usually just behind the revision: worth a moment before asking again.
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([direct, new Promise((r) => timer = setTimeout(r, DIRECT_GRACE_MS))]);
        clearTimeout(timer);
      }
      for (let round = 1;; round++) {
        if (answered.yet && (answered.entry?.revision ?? 0) === revision) {
          return answered.entry;
        }
        if (revision === 0) return null;
        const want = revision;
        const e = await Promise.any([
          direct.then((d) => d?.revision === want ? d : Promise.reject()),
          this.atRevision(kv, key, want).then((a) => a ?? Promise.reject()),
        ]).catch(() => null);
        if (e !== null) return e;
        if (round >= MAX_VERIFY_ROUNDS) break;
        revision = await this.committedRevision(kv, key);
      }
      throw new StoreUnavailableError(`could not read ${key} at its committed revision`);
    })();
    confirmed.catch(() => {});
    // Dependent reads start from whichever comes first: the direct get, or
    // the confirmed value when that replica is slow.
    const guess = Promise.race([direct, confirmed.catch(() => null)]);
    return { guess, confirmed };
  }

  async getCurrent<T>(kv: KV, key: string): Promise<{ value: T; revision: number } | null> {
    return this.parse<T>(kv, key, await this.startCurrent(kv, key).confirmed);
  }

  /** KV create; false if the key exists. */
  async create(kv: KV, key: string, value: unknown): Promise<number | false> {
    try {
      return await this.write(`create ${key}`, () => kv.create(key, encode(value)));
    } catch (err) {
      if (err instanceof Raced) return false;
      throw err;
    }
  }

  /** KV update at `revision`; false if it moved. */
  async update(kv: KV, key: string, value: unknown, revision: number): Promise<number | false> {
    try {
      return await this.write(`update ${key}`, () => kv.update(key, encode(value), revision));
    } catch (err) {
      if (err instanceof Raced) return false;
      throw err;
    }
  }

  /** KV delete at `revision`; false if it moved. */
  async delete(kv: KV, key: string, revision?: number): Promise<boolean> {
    try {
      await this.write(
        `delete ${key}`,
        () => kv.delete(key, revision === undefined ? {} : { previousSeq: revision }),
      );
      return true;
    } catch (err) {
      if (err instanceof Raced) return false;
      throw err;
    }
  }

  /**
   * The keys of `kv` matching `filter` (one KV key filter or several), as
   * the bucket's stream leader lists its subjects. A superset: a deleted key
   * whose tombstone is still stored is listed too, so every caller reads (or
   * deletes) each key it gets, as each did already.
   *
   * Why not `kv.keys()`: it reads through an ephemeral consumer, which
   * nats-server 2.10 places on any peer of the stream, a killed one included
   * until it is marked offline (about three minutes after a `kill -9`).
   * Meanwhile about one listing in three timed out on every survivor, and
   * with it room creation (the quota count lists the creator's rooms), every
   * room view (the change log), sealed keys and room deletion, some of them
   * after their write had committed. A stream info request is answered by
   * the stream's leader, which is always a live node.
   */
  async keys(kv: KV, filter: string | string[]): Promise<string[]> {
    const filters = [filter].flat();
    return await this.io(`keys ${filters[0]}`, async () => {
      const bucket = this.#nameOf.get(kv);
      if (bucket === undefined) throw new Error("not a bucket of this store");
      const prefix = `$KV.${bucket}.`;
      const lists = await Promise.all(filters.map(async (f) => {
        // nats.js pages through a long subject list (100 000 per answer).
        const info = await this.#b!.jsm.streams.info(`KV_${bucket}`, {
          subjects_filter: prefix + f,
        });
        return Object.keys(info.state.subjects ?? {});
      }));
      const keys = new Set<string>();
      for (const subject of lists.flat()) {
        if (subject.startsWith(prefix)) keys.add(subject.slice(prefix.length));
      }
      return [...keys];
    });
  }

  /**
   * The last sequence of each bucket's stream (but those in `except`) and of
   * the object store's, read from the streams' leaders.
   */
  async lastSequences(except: (keyof Buckets["kv"])[]): Promise<Record<string, number>> {
    return await this.io("stream sequences", async () => {
      const b = this.#b!;
      const streams = (Object.keys(b.names) as (keyof Buckets["kv"])[])
        .filter((k) => !except.includes(k)).map((k) => `KV_${b.names[k]}`);
      streams.push(`OBJ_${b.blobsName}`);
      const marks: Record<string, number> = {};
      for (const s of streams) marks[s] = (await b.jsm.streams.info(s)).state.last_seq;
      return marks;
    });
  }

  /**
   * An object's bytes, read chunk by chunk from the object store's stream
   * leader (a message get by subject per chunk) and checked against the
   * object's size and SHA-256 digest; null if there is no such object. Not
   * `ObjectStore.get`, which reads through an ephemeral consumer: see
   * {@linkcode KvStore.#keys} for what that does while a peer is dead.
   */
  async readObject(name: string): Promise<Uint8Array | null> {
    const b = this.#b!;
    const info = await b.blobs.info(name);
    if (info === null || info.deleted) return null;
    const stream = `OBJ_${b.blobsName}`;
    const subject = `$O.${b.blobsName}.C.${info.nuid}`;
    const bytes = new Uint8Array(info.size);
    let filled = 0;
    let seq = 0;
    for (let i = 0; i < info.chunks; i++) {
      // STREAM.MSG.GET takes `next_by_subj` (nats-server 2.9+); nats.js
      // types it only for direct gets, which any replica answers, and a
      // replica may not hold the newest chunks yet.
      const query = { seq, next_by_subj: subject } as unknown as MsgRequest;
      const m = await b.jsm.streams.getMessage(stream, query);
      if (m === null || filled + m.data.length > bytes.length) {
        throw new Error(`object ${name} does not match its record (chunk ${i + 1})`);
      }
      bytes.set(m.data, filled);
      filled += m.data.length;
      seq = m.seq + 1;
    }
    if (filled !== bytes.length || !await digestMatches(bytes, info.digest)) {
      throw new Error(`object ${name} does not match its size or digest`);
    }
    return bytes;
  }

  /** Read-modify-write of one key at its revision, retried on a lost race. */
  async cas<T, R>(
    kv: KV,
    key: string,
    fn: (current: T | null) => { write: T; result: R } | { done: R },
  ): Promise<R> {
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const cur = await this.get<T>(kv, key);
      const step = fn(cur?.value ?? null);
      if ("done" in step) return step.done;
      const ok = cur === null
        ? await this.create(kv, key, step.write)
        : await this.update(kv, key, step.write, cur.revision);
      if (ok !== false) return step.result;
    }
    throw new StoreUnavailableError(`too much contention on ${key}`);
  }

  async deleteObject(name: string): Promise<void> {
    await this.io("delete blob", () => this.blobs.delete(name)).catch((err) => {
      // An orphaned object is unreachable (nothing names it); say so and go on.
      this.#log?.warn("could not delete a blob's bytes", { object: name, error: err });
    });
  }
}
