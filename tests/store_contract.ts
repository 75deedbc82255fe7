/**
 * Backend-independent contract for the control-plane {@linkcode Store}. Every
 * backend's test file calls {@linkcode storeContract}; each case opens a fresh
 * store, so backends must not share state between `open()` calls.
 *
 * @example
 * ```ts
 * import { storeContract } from "./store_contract.ts";
 * import { openSqliteStore } from "../lib/store/sqlite.ts";
 * storeContract("sqlite", async () => {
 *   const dir = await Deno.makeTempDir();
 *   const store = await openSqliteStore(`${dir}/control.db`);
 *   return {
 *     store,
 *     cleanup: () => Deno.remove(dir, { recursive: true }),
 *     another: () => openSqliteStore(`${dir}/control.db`),
 *   };
 * });
 * ```
 * @module
 */

import assert from "node:assert/strict";
import {
  BlobExistsError,
  ConflictError,
  InvalidInputError,
  KeyExistsError,
  MAX_TEXT_LENGTH,
  MemberExistsError,
  type NewRoom,
  type NewUser,
  NotFoundError,
  type Role,
  RoomExistsError,
  type RoomStateAfter,
  type Store,
  type StoreChange,
  StoreError,
  StoreUnavailableError,
  UserExistsError,
} from "../lib/store/store.ts";
import { handleViolation, subjectViolation, textViolation } from "../lib/grammar.ts";
import { generatedStrings } from "./helpers/strings.ts";

/** What a backend hands the contract: a fresh store and how to dispose of it. */
export interface OpenedStore {
  store: Store;
  cleanup: () => Promise<void>;
  /** Opens a second handle on the same data, as another process or node would. */
  another: () => Promise<Store>;
}

/**
 * Distinct valid 64-hex keys for tests: key(1), key(2), ...
 *
 * @example
 * ```ts
 * import { key } from "./store_contract.ts";
 * key(1); // "0101...01"
 * ```
 */
export function key(n: number): string {
  return n.toString(16).padStart(2, "0").repeat(32).slice(0, 64);
}

const A = key(1);
const B = key(2);
const C = key(3);

function user(signPub: string, extra: Partial<NewUser> = {}): NewUser {
  return { signPub, kexPub: null, kexSig: null, handle: "u", role: "member", ...extra };
}

const NO_MEMBERS: RoomStateAfter = { members: [], epoch: 0 };

/** A member set of `[signPub, role]` pairs, added by A. */
function after(members: Array<[string, Role]>, epoch = 0): RoomStateAfter {
  return {
    members: members.map(([signPub, role]) => ({ signPub, role, addedBy: A, change: null })),
    epoch,
  };
}

function room(id: string, extra: Partial<NewRoom> = {}): NewRoom {
  return {
    id,
    subject: `room.${id}`,
    policy: { encrypt: true, sign: true, persist: false },
    createdBy: A,
    createdAt: 1000,
    ...extra,
  };
}

/** True when a feed event `c` tells a consumer to re-read what `want` names. */
function covers(c: StoreChange, want: StoreChange): boolean {
  if (c.kind === "all") return true;
  if (c.kind === "user" && want.kind === "user") return c.signPub === want.signPub;
  if (c.kind === "room" && want.kind === "room") return c.roomId === want.roomId;
  return false;
}

/** Waits until `cond()` holds; fails after `ms`. */
async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Registers the Store contract as Deno tests named `store contract (<name>): ...`.
 *
 * @example
 * ```ts
 * import { storeContract } from "./store_contract.ts";
 * import { openSqliteStore } from "../lib/store/sqlite.ts";
 * storeContract("sqlite", async () => {
 *   const dir = await Deno.makeTempDir();
 *   return {
 *     store: await openSqliteStore(`${dir}/c.db`),
 *     cleanup: () => Deno.remove(dir, { recursive: true }),
 *     another: () => openSqliteStore(`${dir}/c.db`),
 *   };
 * });
 * ```
 */
export function storeContract(name: string, open: () => Promise<OpenedStore>): void {
  const testWith = (
    title: string,
    fn: (s: Store, another: () => Promise<Store>) => Promise<void>,
  ) =>
    Deno.test(`store contract (${name}): ${title}`, async () => {
      const { store, cleanup, another } = await open();
      try {
        await fn(store, another);
      } finally {
        await store.close();
        await cleanup();
      }
    });
  const test = (title: string, fn: (s: Store) => Promise<void>) => testWith(title, (s) => fn(s));

  // ---- users ----

  test("addUser stores an active user that getUser reads back", async (s) => {
    const added = await s.addUser(user(A, { handle: "ada", role: "admin", createdAt: 5 }));
    const expected = {
      signPub: A,
      kexPub: null,
      kexSig: null,
      handle: "ada",
      role: "admin",
      status: "active",
      createdAt: 5,
    };
    assert.deepEqual(added, expected);
    assert.deepEqual(await s.getUser(A), expected);
  });

  test("addUser defaults createdAt to the current time", async (s) => {
    const before = Date.now();
    const u = await s.addUser(user(A));
    assert.ok(u.createdAt >= before && u.createdAt <= Date.now());
  });

  test("addUser refuses an existing key and leaves the row unchanged", async (s) => {
    await s.addUser(user(A, { handle: "first", createdAt: 1 }));
    await assert.rejects(
      s.addUser(user(A, { handle: "second", role: "admin", createdAt: 2 })),
      (e) => e instanceof UserExistsError && e.code === "user_exists",
    );
    const u = await s.getUser(A);
    assert.equal(u?.handle, "first");
    assert.equal(u?.role, "member");
    assert.equal(u?.createdAt, 1);
  });

  test("getUser returns null for an unknown key", async (s) => {
    assert.equal(await s.getUser(A), null);
  });

  test("listUsers sorts by createdAt then handle", async (s) => {
    await s.addUser(user(A, { handle: "zed", createdAt: 10 }));
    await s.addUser(user(B, { handle: "bob", createdAt: 20 }));
    await s.addUser(user(C, { handle: "amy", createdAt: 10 }));
    const list = await s.listUsers();
    assert.deepEqual(list.map((u) => u.handle), ["amy", "zed", "bob"]);
  });

  test("revokeUser flips status to revoked, keeps the user, and can repeat", async (s) => {
    await s.addUser(user(A, { kexPub: B, kexSig: "abcd" }));
    await s.revokeUser(A);
    await s.revokeUser(A);
    const u = await s.getUser(A);
    assert.equal(u?.status, "revoked");
    assert.equal(u?.kexPub, B);
    assert.equal((await s.listUsers()).length, 1);
  });

  test("revokeUser of an unknown key is NotFoundError", async (s) => {
    await assert.rejects(s.revokeUser(A), NotFoundError);
  });

  test("setUserKex sets the key-exchange key only while it is unset", async (s) => {
    await s.addUser(user(A, { handle: "ada" }));
    await s.setUserKex(A, B, "00ff");
    const u = await s.getUser(A);
    assert.equal(u?.kexPub, B);
    assert.equal(u?.kexSig, "00ff");
    assert.equal(u?.handle, "ada");
    await s.setUserKex(A, B, "00ff"); // the same pair again: no-op
    await assert.rejects(
      s.setUserKex(A, C, "00ee"),
      (e) => e instanceof ConflictError && e.code === "conflict",
    );
    assert.equal((await s.getUser(A))?.kexPub, B);
    await assert.rejects(s.setUserKex(C, B, "00ff"), NotFoundError);
  });

  test("setUserMaxConnections sets a user's own limit, keeps the rest, and null takes it back", async (s) => {
    await s.addUser(user(A, { handle: "ada" }));
    assert.equal((await s.getUser(A))?.maxConnections, undefined);
    await s.revokeUser(A);
    await s.setUserMaxConnections(A, 7);
    const u = await s.getUser(A);
    assert.equal(u?.maxConnections, 7);
    assert.equal(u?.status, "revoked");
    assert.equal(u?.handle, "ada");
    assert.deepEqual((await s.listUsers()).map((x) => x.maxConnections), [7]);
    await s.setUserMaxConnections(A, null);
    assert.equal("maxConnections" in (await s.getUser(A))!, false);
    for (const bad of [0, -1, 1.5, 100_001, Number.NaN]) {
      await assert.rejects(s.setUserMaxConnections(A, bad), InvalidInputError, String(bad));
    }
    assert.equal((await s.getUser(A))?.maxConnections, undefined);
    await assert.rejects(s.setUserMaxConnections(B, 3), NotFoundError);
  });

  test("concurrent setUserKex with different keys lets exactly one win", async (s) => {
    await s.addUser(user(A));
    const keys = [B, C, key(4), key(5)];
    const results = await Promise.allSettled(keys.map((k) => s.setUserKex(A, k, "00ff")));
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    const winner = keys[results.findIndex((r) => r.status === "fulfilled")];
    assert.equal((await s.getUser(A))?.kexPub, winner);
  });

  test("revokeUser keeps a kex key and the user stays revoked under concurrent calls", async (s) => {
    await s.addUser(user(A));
    await Promise.all([s.revokeUser(A), s.setUserKex(A, B, "00ff"), s.revokeUser(A)]);
    const u = await s.getUser(A);
    assert.equal(u?.status, "revoked");
    assert.equal(u?.kexPub, B);
  });

  test("user input breaking the types is InvalidInputError and nothing is stored", async (s) => {
    const bad: NewUser[] = [
      user("AB".repeat(32)),
      user(A.slice(2)),
      user("z".repeat(64)),
      user(A, { kexPub: "12", kexSig: "00" }),
      user(A, { kexPub: B, kexSig: "xyz" }),
      user(A, { kexPub: B, kexSig: null }),
      user(A, { handle: "" }),
      user(A, { handle: "a\nb" }),
      user(A, { role: "root" as "admin" }),
      user(A, { createdAt: -1 }),
    ];
    for (const u of bad) {
      await assert.rejects(
        s.addUser(u),
        (e) => e instanceof InvalidInputError && e.code === "invalid_input",
        JSON.stringify(u),
      );
    }
    assert.deepEqual(await s.listUsers(), []);
    await assert.rejects(s.getUser("nope"), InvalidInputError);
    await s.addUser(user(A));
    await assert.rejects(s.setUserKex(A, "nope", "00"), InvalidInputError);
  });

  // ---- rooms ----

  test("createRoom starts at epoch 0 and is found by id and by subject", async (s) => {
    const r = await s.createRoom(
      room("ops", { policy: { encrypt: false, sign: true, persist: true } }),
    );
    const expected = {
      id: "ops",
      subject: "room.ops",
      policy: { encrypt: false, sign: true, persist: true },
      createdBy: A,
      createdAt: 1000,
      epoch: 0,
    };
    assert.deepEqual(r, expected);
    assert.deepEqual(await s.getRoom("ops"), expected);
    assert.deepEqual(await s.getRoomBySubject("room.ops"), expected);
    assert.equal(await s.getRoom("other"), null);
    assert.equal(await s.getRoomBySubject("room.other"), null);
  });

  test("createRoom refuses a taken id or subject and leaves the room unchanged", async (s) => {
    await s.createRoom(room("ops"));
    await assert.rejects(
      s.createRoom(room("ops", { subject: "room.new", createdBy: B })),
      (e) => e instanceof RoomExistsError && e.code === "room_exists",
    );
    await assert.rejects(s.createRoom(room("new", { subject: "room.ops" })), RoomExistsError);
    assert.equal(await s.getRoom("new"), null);
    const r = await s.getRoom("ops");
    assert.equal(r?.subject, "room.ops");
    assert.equal(r?.createdBy, A);
  });

  test("createRoom rejects a bad id, a wildcard subject or a bad policy", async (s) => {
    await assert.rejects(s.createRoom(room("")), InvalidInputError);
    await assert.rejects(s.createRoom(room("a b")), InvalidInputError);
    await assert.rejects(s.createRoom(room("x", { subject: "room.*" })), InvalidInputError);
    await assert.rejects(s.createRoom(room("x", { subject: "room..x" })), InvalidInputError);
    await assert.rejects(s.createRoom(room("x", { subject: "room >" })), InvalidInputError);
    await assert.rejects(
      s.createRoom(room("x", { policy: { encrypt: 1, sign: true, persist: false } as never })),
      InvalidInputError,
    );
    await assert.rejects(s.createRoom(room("x", { createdBy: "me" })), InvalidInputError);
    assert.equal(await s.getRoom("x"), null);
  });

  test("countRoomsCreatedBy counts a creator's rooms and persisted rooms", async (s) => {
    assert.deepEqual(await s.countRoomsCreatedBy(A), { rooms: 0, persisted: 0 });
    const persist = { encrypt: true, sign: true, persist: true };
    await s.createRoom(room("r1"));
    await s.createRoom(room("r2", { policy: persist }));
    await s.createRoom(room("r3", { policy: persist }));
    await s.createRoom(room("r4", { createdBy: B, policy: persist }));
    // Membership is not creation: A in B's room does not count for A.
    await s.addMember({ roomId: "r4", signPub: A, role: "member", addedBy: B, change: null });
    assert.deepEqual(await s.countRoomsCreatedBy(A), { rooms: 3, persisted: 2 });
    assert.deepEqual(await s.countRoomsCreatedBy(B), { rooms: 1, persisted: 1 });
    await s.deleteRoom("r2");
    assert.deepEqual(await s.countRoomsCreatedBy(A), { rooms: 2, persisted: 1 });
    assert.deepEqual(await s.countRoomsCreatedBy(C), { rooms: 0, persisted: 0 });
    await assert.rejects(s.countRoomsCreatedBy("AB".repeat(32)), InvalidInputError);
  });

  test("setRoomEpoch advances only from the expected epoch", async (s) => {
    await s.createRoom(room("ops"));
    await s.setRoomEpoch("ops", 0, 1);
    assert.equal((await s.getRoom("ops"))?.epoch, 1);
    await assert.rejects(
      s.setRoomEpoch("ops", 0, 2),
      (e) => e instanceof ConflictError && e.code === "conflict",
    );
    assert.equal((await s.getRoom("ops"))?.epoch, 1);
    await s.setRoomEpoch("ops", 1, 2);
    assert.equal((await s.getRoom("ops"))?.epoch, 2);
  });

  test("setRoomEpoch on an unknown room is NotFoundError and never goes back", async (s) => {
    await assert.rejects(s.setRoomEpoch("nope", 0, 1), NotFoundError);
    await s.createRoom(room("ops"));
    await assert.rejects(s.setRoomEpoch("ops", 0, 0), InvalidInputError);
    await assert.rejects(s.setRoomEpoch("ops", 0, -1), InvalidInputError);
    await assert.rejects(s.setRoomEpoch("ops", 0, 1.5), InvalidInputError);
  });

  test("concurrent setRoomEpoch from the same epoch lets exactly one win", async (s) => {
    await s.createRoom(room("ops"));
    const results = await Promise.allSettled([1, 2, 3, 4].map(() => s.setRoomEpoch("ops", 0, 1)));
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    for (const r of results) {
      if (r.status === "rejected") assert.ok(r.reason instanceof ConflictError);
    }
  });

  test("listRoomsForMember follows adds and removes, sorted by room id", async (s) => {
    await s.createRoom(room("b"));
    await s.createRoom(room("a"));
    await s.createRoom(room("c"));
    for (const id of ["b", "a"]) {
      await s.addMember({ roomId: id, signPub: B, role: "member", addedBy: A, change: null });
    }
    await s.addMember({ roomId: "c", signPub: C, role: "member", addedBy: A, change: null });
    assert.deepEqual((await s.listRoomsForMember(B)).map((r) => r.id), ["a", "b"]);
    await s.removeMember("a", B);
    assert.deepEqual((await s.listRoomsForMember(B)).map((r) => r.id), ["b"]);
    assert.deepEqual(await s.listRoomsForMember(A), []);
  });

  test("deleteRoom removes the room, its members and sealed keys", async (s) => {
    await s.createRoom(room("ops"));
    await s.createRoom(room("dev"));
    for (const id of ["ops", "dev"]) {
      await s.addMember({ roomId: id, signPub: B, role: "member", addedBy: A, change: null });
      await s.putSealedKeys(id, 0, [{ recipient: B, sealed: "AAAA", sealedBy: A }]);
    }
    await s.deleteRoom("ops");
    assert.equal(await s.getRoom("ops"), null);
    assert.equal(await s.getRoomBySubject("room.ops"), null);
    assert.deepEqual(await s.listMembers("ops"), []);
    assert.equal(await s.getSealedKey("ops", 0, B), null);
    assert.deepEqual((await s.listRoomsForMember(B)).map((r) => r.id), ["dev"]);
    assert.ok(await s.getSealedKey("dev", 0, B));
    await assert.rejects(s.deleteRoom("ops"), NotFoundError);
    // A deleted room's id and subject are free again, with no stale members.
    await s.createRoom(room("ops"));
    assert.deepEqual(await s.listMembers("ops"), []);
    assert.equal((await s.getRoom("ops"))?.epoch, 0);
  });

  // ---- room change log ----

  test("applyRoomChange appends changes that listRoomChanges returns in seq order", async (s) => {
    await s.createRoom(room("ops"));
    await s.createRoom(room("dev"));
    await s.applyRoomChange("ops", 0, { text: "zero\n", sig: "AAAA" }, NO_MEMBERS);
    await s.applyRoomChange("ops", 1, { text: "one\n", sig: "AQ==" }, NO_MEMBERS);
    await s.applyRoomChange("ops", 2, { text: "two \u00e9\n", sig: "Ag==" }, NO_MEMBERS);
    await s.applyRoomChange("dev", 0, { text: "dev\n", sig: "BBBB" }, NO_MEMBERS);
    assert.deepEqual(await s.listRoomChanges("ops"), [
      { seq: 0, text: "zero\n", sig: "AAAA" },
      { seq: 1, text: "one\n", sig: "AQ==" },
      { seq: 2, text: "two \u00e9\n", sig: "Ag==" },
    ]);
    assert.deepEqual(await s.listRoomChanges("dev"), [{ seq: 0, text: "dev\n", sig: "BBBB" }]);
    assert.deepEqual(await s.listRoomChanges("none"), []);
  });

  test("applyRoomChange at a taken seq or past a gap is ConflictError and changes nothing", async (s) => {
    await s.createRoom(room("ops"));
    const first = after([[B, "admin"]]);
    await s.applyRoomChange("ops", 0, { text: "first\n", sig: "AAAA" }, first);
    await assert.rejects(
      s.applyRoomChange("ops", 0, { text: "second\n", sig: "BBBB" }, after([[C, "admin"]], 3)),
      (e) => e instanceof ConflictError && e.code === "conflict",
    );
    await assert.rejects(
      s.applyRoomChange("ops", 2, { text: "gap\n", sig: "BBBB" }, after([[C, "admin"]], 3)),
      ConflictError,
    );
    assert.deepEqual(await s.listRoomChanges("ops"), [{ seq: 0, text: "first\n", sig: "AAAA" }]);
    assert.deepEqual((await s.listMembers("ops")).map((m) => m.signPub), [B]);
    assert.equal((await s.getRoom("ops"))?.epoch, 0);
  });

  test("concurrent applyRoomChange at one seq lets exactly one win, with its member set", async (s) => {
    await s.createRoom(room("ops"));
    await s.applyRoomChange("ops", 0, { text: "c0\n", sig: "AAAA" }, after([[A, "admin"]]));
    const who = [B, C, key(4), key(5)];
    const results = await Promise.allSettled(
      who.map((k, n) =>
        s.applyRoomChange(
          "ops",
          1,
          { text: `c${n}\n`, sig: "AAAA" },
          after([[A, "admin"], [
            k,
            "member",
          ]]),
        )
      ),
    );
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    for (const r of results) {
      if (r.status === "rejected") assert.ok(r.reason instanceof ConflictError);
    }
    const winner = results.findIndex((r) => r.status === "fulfilled");
    const log = await s.listRoomChanges("ops");
    assert.equal(log.length, 2);
    assert.equal(log[1].text, `c${winner}\n`);
    assert.deepEqual(
      (await s.listMembers("ops")).map((m) => m.signPub).sort(),
      [A, who[winner]].sort(),
    );
  });

  test("applyRoomChange versions the member set: an older change never overwrites a newer one", async (s) => {
    await s.createRoom(room("ops"));
    const c0 = { text: "c0\n", sig: "AAAA" };
    const c1 = { text: "c1\n", sig: "AQ==" };
    const c2 = { text: "c2\n", sig: "Ag==" };
    await s.applyRoomChange("ops", 0, c0, after([[A, "admin"]]));
    await s.applyRoomChange("ops", 1, c1, after([[A, "admin"], [B, "member"]], 1));
    // Change 2 removes B; a late repeat of change 1 (another node, a retry)
    // must not bring B back, nor lower the epoch.
    await s.applyRoomChange("ops", 2, c2, after([[A, "admin"]], 2));
    await s.applyRoomChange("ops", 1, c1, after([[A, "admin"], [B, "member"]], 1));
    assert.deepEqual((await s.listMembers("ops")).map((m) => m.signPub), [A]);
    assert.equal(await s.getMember("ops", B), null);
    assert.deepEqual((await s.listRoomsForMember(B)).map((r) => r.id), []);
    assert.equal((await s.getRoom("ops"))?.epoch, 2);
    assert.equal((await s.listRoomChanges("ops")).length, 3);
  });

  test("applyRoomChange repeated verbatim completes the member set; epoch never goes down", async (s) => {
    await s.createRoom(room("ops"));
    await s.setRoomEpoch("ops", 0, 5);
    const c0 = { text: "c0\n", sig: "AAAA" };
    await s.applyRoomChange("ops", 0, c0, after([[A, "admin"]], 1));
    assert.equal((await s.getRoom("ops"))?.epoch, 5);
    await s.removeMember("ops", A); // as if a writer stopped half-way
    await s.applyRoomChange("ops", 0, c0, after([[A, "admin"]], 1));
    assert.deepEqual((await s.listMembers("ops")).map((m) => m.signPub), [A]);
    assert.deepEqual((await s.listRoomsForMember(A)).map((r) => r.id), ["ops"]);
  });

  test("applyRoomChange keeps the stored row of a member whose role is unchanged", async (s) => {
    await s.createRoom(room("ops"));
    await s.applyRoomChange("ops", 0, { text: "c0\n", sig: "AAAA" }, {
      members: [{ signPub: A, role: "admin", addedBy: A, change: "genesis", addedAt: 1 }],
      epoch: 0,
    });
    await s.applyRoomChange("ops", 1, { text: "c1\n", sig: "AAAA" }, {
      members: [
        { signPub: A, role: "admin", addedBy: B, change: "other", addedAt: 9 },
        { signPub: B, role: "member", addedBy: A, change: "add-b", addedAt: 2 },
      ],
      epoch: 0,
    });
    const a = await s.getMember("ops", A);
    assert.equal(a?.addedAt, 1);
    assert.equal(a?.change, "genesis");
    assert.equal((await s.getMember("ops", B))?.change, "add-b");
    // A role change replaces the row.
    await s.applyRoomChange("ops", 2, { text: "c2\n", sig: "AAAA" }, {
      members: [
        { signPub: A, role: "admin", addedBy: A, change: "genesis" },
        { signPub: B, role: "admin", addedBy: A, change: "promote-b", addedAt: 3 },
      ],
      epoch: 0,
    });
    const b = await s.getMember("ops", B);
    assert.equal(b?.role, "admin");
    assert.equal(b?.change, "promote-b");
  });

  test("applyRoomChange to an unknown room is NotFoundError", async (s) => {
    await assert.rejects(
      s.applyRoomChange("nope", 0, { text: "x\n", sig: "AAAA" }, NO_MEMBERS),
      (e) => e instanceof NotFoundError && e.code === "not_found",
    );
    assert.deepEqual(await s.listRoomChanges("nope"), []);
  });

  test("applyRoomChange rejects a bad seq, text, signature or member set", async (s) => {
    await s.createRoom(room("ops"));
    const bad: Array<[number, { text: string; sig: string }, RoomStateAfter]> = [
      [-1, { text: "x", sig: "AAAA" }, NO_MEMBERS],
      [1.5, { text: "x", sig: "AAAA" }, NO_MEMBERS],
      [0, { text: "", sig: "AAAA" }, NO_MEMBERS],
      [0, { text: "x", sig: "not base64!" }, NO_MEMBERS],
      [0, { text: "x", sig: "" }, NO_MEMBERS],
      [0, { text: 5, sig: "AAAA" } as never, NO_MEMBERS],
      [0, null as never, NO_MEMBERS],
      [0, { text: "x", sig: "AAAA" }, after([[A, "admin"], [A, "member"]])],
      [0, { text: "x", sig: "AAAA" }, after([["nope", "admin"]])],
      [0, { text: "x", sig: "AAAA" }, { members: [], epoch: -1 }],
    ];
    for (const [seq, change, next] of bad) {
      await assert.rejects(
        s.applyRoomChange("ops", seq, change, next),
        InvalidInputError,
        JSON.stringify([seq, change, next]),
      );
    }
    await assert.rejects(
      s.applyRoomChange("a b", 0, { text: "x", sig: "AAAA" }, NO_MEMBERS),
      InvalidInputError,
    );
    assert.deepEqual(await s.listRoomChanges("ops"), []);
  });

  test("createRoom with a genesis stores change 0 and the first members with the room", async (s) => {
    const r = await s.createRoom(room("ops"), {
      change: { text: "genesis\n", sig: "AAAA" },
      members: [{ signPub: A, role: "admin", addedBy: A, change: "g", addedAt: 4 }],
    });
    assert.equal(r.epoch, 0);
    assert.deepEqual(await s.listRoomChanges("ops"), [{ seq: 0, text: "genesis\n", sig: "AAAA" }]);
    assert.deepEqual(await s.getMember("ops", A), {
      roomId: "ops",
      signPub: A,
      role: "admin",
      addedBy: A,
      addedAt: 4,
      change: "g",
    });
    assert.deepEqual((await s.listRoomsForMember(A)).map((x) => x.id), ["ops"]);
    // The next change follows the genesis.
    await s.applyRoomChange("ops", 1, { text: "c1\n", sig: "AAAA" }, after([[A, "admin"]]));
    // A taken id or subject writes nothing of the losing genesis.
    await assert.rejects(
      s.createRoom(room("ops", { subject: "room.other" }), {
        change: { text: "lost\n", sig: "BBBB" },
        members: [{ signPub: B, role: "admin", addedBy: B, change: null }],
      }),
      RoomExistsError,
    );
    await assert.rejects(
      s.createRoom(room("new", { subject: "room.ops" }), {
        change: { text: "lost\n", sig: "BBBB" },
        members: [{ signPub: B, role: "admin", addedBy: B, change: null }],
      }),
      RoomExistsError,
    );
    assert.equal(await s.getRoom("new"), null);
    assert.deepEqual(await s.listRoomsForMember(B), []);
    assert.equal((await s.listRoomChanges("ops")).length, 2);
    assert.deepEqual(await s.listRoomChanges("new"), []);
  });

  test("concurrent createRoom with one id or subject lets exactly one win", async (s) => {
    const results = await Promise.allSettled(
      [B, C, key(4), key(5)].map((k, n) =>
        s.createRoom(room(n % 2 ? "ops" : `r${n}`, { subject: "room.same", createdBy: k }), {
          change: { text: `g${n}\n`, sig: "AAAA" },
          members: [{ signPub: k, role: "admin", addedBy: k, change: null }],
        })
      ),
    );
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    for (const r of results) {
      if (r.status === "rejected") assert.ok(r.reason instanceof RoomExistsError);
    }
    const winner = (await s.getRoomBySubject("room.same"))!;
    assert.ok(winner);
    assert.equal((await s.listMembers(winner.id)).length, 1);
    assert.equal((await s.listMembers(winner.id))[0].signPub, winner.createdBy);
  });

  test("deleteRoom removes the change log and blobs, so a re-created room starts empty", async (s) => {
    await s.createRoom(room("ops"));
    await s.createRoom(room("dev"));
    await s.applyRoomChange("ops", 0, { text: "old\n", sig: "AAAA" }, after([[B, "admin"]]));
    await s.applyRoomChange("dev", 0, { text: "dev\n", sig: "AAAA" }, after([[B, "admin"]]));
    await s.setRoomEpoch("ops", 0, 3);
    await s.putSealedKeys("ops", 3, [{ recipient: B, sealed: "AAAA", sealedBy: A }]);
    await s.putBlob({ id: "b-ops", roomId: "ops", owner: A, data: new Uint8Array([1]) });
    await s.putBlob({ id: "b-dev", roomId: "dev", owner: A, data: new Uint8Array([2]) });
    await s.deleteRoom("ops");
    assert.deepEqual(await s.listRoomChanges("ops"), []);
    assert.equal(await s.getBlob("b-ops"), null);
    assert.equal(await s.getBlobMeta("b-ops"), null);
    assert.equal((await s.listRoomChanges("dev")).length, 1);
    assert.ok(await s.getBlob("b-dev"));
    await s.createRoom(room("ops"));
    assert.deepEqual(await s.listRoomChanges("ops"), []);
    assert.deepEqual(await s.listMembers("ops"), []);
    assert.equal(await s.getSealedKey("ops", 3, B), null);
    assert.equal((await s.getRoom("ops"))?.epoch, 0);
    assert.deepEqual((await s.listRoomsForMember(B)).map((r) => r.id), ["dev"]);
    await s.applyRoomChange("ops", 0, { text: "new\n", sig: "BBBB" }, NO_MEMBERS);
    assert.deepEqual(await s.listRoomChanges("ops"), [{ seq: 0, text: "new\n", sig: "BBBB" }]);
    // And under the same subject with another id.
    await s.deleteRoom("ops");
    await s.createRoom(room("ops2", { subject: "room.ops" }));
    assert.deepEqual(await s.listRoomChanges("ops2"), []);
    assert.equal((await s.getRoomBySubject("room.ops"))?.id, "ops2");
  });

  // ---- members ----

  test("addMember stores the signed change verbatim", async (s) => {
    await s.createRoom(room("ops"));
    const change = '{"op":"add","sig":"c2lnbmVk"} \u00e9';
    const m = await s.addMember({
      roomId: "ops",
      signPub: B,
      role: "admin",
      addedBy: A,
      change,
      addedAt: 7,
    });
    const expected = { roomId: "ops", signPub: B, role: "admin", addedBy: A, addedAt: 7, change };
    assert.deepEqual(m, expected);
    assert.deepEqual(await s.getMember("ops", B), expected);
    assert.equal(await s.getMember("ops", C), null);
  });

  test("addMember refuses an existing member and leaves it unchanged", async (s) => {
    await s.createRoom(room("ops"));
    await s.addMember({ roomId: "ops", signPub: B, role: "member", addedBy: A, change: "one" });
    await assert.rejects(
      s.addMember({ roomId: "ops", signPub: B, role: "admin", addedBy: C, change: "two" }),
      (e) => e instanceof MemberExistsError && e.code === "member_exists",
    );
    const m = await s.getMember("ops", B);
    assert.equal(m?.role, "member");
    assert.equal(m?.change, "one");
  });

  test("addMember to an unknown room is NotFoundError", async (s) => {
    await assert.rejects(
      s.addMember({ roomId: "nope", signPub: B, role: "member", addedBy: A, change: null }),
      (e) => e instanceof NotFoundError && e.code === "not_found",
    );
    assert.deepEqual(await s.listRoomsForMember(B), []);
  });

  test("listMembers orders by addedAt and removeMember of an absent member fails", async (s) => {
    await s.createRoom(room("ops"));
    await s.addMember({
      roomId: "ops",
      signPub: C,
      role: "member",
      addedBy: A,
      change: null,
      addedAt: 2,
    });
    await s.addMember({
      roomId: "ops",
      signPub: B,
      role: "member",
      addedBy: A,
      change: null,
      addedAt: 3,
    });
    await s.addMember({
      roomId: "ops",
      signPub: A,
      role: "admin",
      addedBy: A,
      change: null,
      addedAt: 1,
    });
    assert.deepEqual((await s.listMembers("ops")).map((m) => m.signPub), [A, C, B]);
    await s.removeMember("ops", C);
    assert.deepEqual((await s.listMembers("ops")).map((m) => m.signPub), [A, B]);
    await assert.rejects(s.removeMember("ops", C), NotFoundError);
    await assert.rejects(s.removeMember("nope", C), NotFoundError);
    await assert.rejects(
      s.addMember({ roomId: "ops", signPub: "x", role: "member", addedBy: A, change: null }),
      InvalidInputError,
    );
  });

  // ---- sealed keys ----

  test("putSealedKeys stores one epoch's keys and listSealedKeysFor orders by epoch", async (s) => {
    await s.createRoom(room("ops"));
    await s.putSealedKeys("ops", 2, [
      { recipient: B, sealed: "YjI=", sealedBy: A, createdAt: 20 },
      { recipient: C, sealed: "YzI=", sealedBy: A, createdAt: 20 },
    ]);
    await s.putSealedKeys("ops", 0, [{ recipient: B, sealed: "YjA=", sealedBy: A, createdAt: 1 }]);
    await s.putSealedKeys("ops", 1, [{ recipient: B, sealed: "YjE=", sealedBy: C, createdAt: 9 }]);
    assert.deepEqual(await s.getSealedKey("ops", 1, B), {
      roomId: "ops",
      epoch: 1,
      recipient: B,
      sealed: "YjE=",
      sealedBy: C,
      createdAt: 9,
    });
    assert.deepEqual((await s.listSealedKeysFor("ops", B)).map((k) => [k.epoch, k.sealed]), [
      [0, "YjA="],
      [1, "YjE="],
      [2, "YjI="],
    ]);
    assert.deepEqual((await s.listSealedKeysFor("ops", C)).map((k) => k.epoch), [2]);
    assert.equal(await s.getSealedKey("ops", 3, B), null);
    assert.deepEqual(await s.listSealedKeysFor("ops", A), []);
  });

  test("putSealedKeys refuses an existing key of an epoch and leaves it unchanged", async (s) => {
    await s.createRoom(room("ops"));
    await s.putSealedKeys("ops", 1, [{ recipient: B, sealed: "b2xk", sealedBy: A }]);
    await assert.rejects(
      s.putSealedKeys("ops", 1, [{ recipient: B, sealed: "bmV3", sealedBy: C }]),
      (e) => e instanceof KeyExistsError && e.code === "key_exists",
    );
    await assert.rejects(
      s.putSealedKeys("ops", 1, [
        { recipient: C, sealed: "bmV3", sealedBy: A },
        { recipient: B, sealed: "bmV3", sealedBy: A },
      ]),
      KeyExistsError,
    );
    const k = await s.getSealedKey("ops", 1, B);
    assert.equal(k?.sealed, "b2xk");
    assert.equal(k?.sealedBy, A);
    // The first refusal took back the key it had stored for C.
    assert.equal(await s.getSealedKey("ops", 1, C), null);
  });

  test("putSealedKeys repeated with the same keys completes them (a retry of an unknown outcome)", async (s) => {
    await s.createRoom(room("ops"));
    // The first try stored B's key only (its sender never learned that).
    await s.putSealedKeys("ops", 1, [{ recipient: B, sealed: "b2xk", sealedBy: A }]);
    const again = await s.putSealedKeys("ops", 1, [
      { recipient: B, sealed: "b2xk", sealedBy: A },
      { recipient: C, sealed: "bmV3", sealedBy: A },
    ]);
    assert.equal(again.length, 2);
    assert.equal((await s.getSealedKey("ops", 1, B))?.sealed, "b2xk");
    assert.equal((await s.getSealedKey("ops", 1, C))?.sealed, "bmV3");
    // The same recipient with another value, or another sealer, is still a conflict.
    await assert.rejects(
      s.putSealedKeys("ops", 1, [{ recipient: B, sealed: "b2xk", sealedBy: C }]),
      KeyExistsError,
    );
  });

  test("putSealedKeys checks the room, the base64 and duplicate recipients", async (s) => {
    await assert.rejects(
      s.putSealedKeys("nope", 0, [{ recipient: B, sealed: "AAAA", sealedBy: A }]),
      NotFoundError,
    );
    await s.createRoom(room("ops"));
    await assert.rejects(
      s.putSealedKeys("ops", 0, [{ recipient: B, sealed: "not base64!", sealedBy: A }]),
      InvalidInputError,
    );
    await assert.rejects(s.putSealedKeys("ops", 0, []), InvalidInputError);
    await assert.rejects(
      s.putSealedKeys("ops", 0, [
        { recipient: B, sealed: "AAAA", sealedBy: A },
        { recipient: B, sealed: "BBBB", sealedBy: A },
      ]),
      InvalidInputError,
    );
    await assert.rejects(
      s.putSealedKeys("ops", -1, [{ recipient: B, sealed: "AAAA", sealedBy: A }]),
      InvalidInputError,
    );
    assert.deepEqual(await s.listSealedKeysFor("ops", B), []);
  });

  // ---- nonces ----

  test("rememberNonce accepts a nonce once and refuses it while live", async (s) => {
    assert.equal(await s.rememberNonce("n1", 2000, 1000), true);
    assert.equal(await s.rememberNonce("n1", 3000, 1500), false);
    assert.equal(await s.rememberNonce("n2", 2000, 1500), true);
  });

  test("rememberNonce under concurrent calls with one nonce returns true exactly once", async (s) => {
    const now = Date.now();
    const results = await Promise.all(
      Array.from({ length: 8 }, () => s.rememberNonce("same", now + 60_000)),
    );
    assert.equal(results.filter((r) => r).length, 1);
  });

  test("rememberNonce reuses an expired nonce and pruneNonces drops only expired ones", async (s) => {
    await s.rememberNonce("old", 100, 0);
    await s.rememberNonce("live", 10_000, 0);
    assert.equal(await s.rememberNonce("old", 500, 200), true);
    // The replacement carries the new expiry, so it is live again at 300.
    assert.equal(await s.rememberNonce("old", 900, 300), false);
    assert.equal(await s.pruneNonces(600), 1);
    assert.equal(await s.pruneNonces(600), 0);
    assert.equal(await s.rememberNonce("live", 20_000, 600), false);
    assert.equal(await s.rememberNonce("old", 900, 600), true);
    await assert.rejects(s.rememberNonce("", 1), InvalidInputError);
  });

  // ---- blobs ----

  test("putBlob stores bytes that getBlob returns and getBlobMeta describes", async (s) => {
    await s.createRoom(room("ops"));
    const data = new Uint8Array([0, 1, 2, 255, 0]);
    const meta = await s.putBlob({ id: "b1", roomId: "ops", owner: A, data, createdAt: 3 });
    const expectedMeta = { id: "b1", roomId: "ops", owner: A, size: 5, createdAt: 3 };
    assert.deepEqual(meta, expectedMeta);
    assert.deepEqual(await s.getBlobMeta("b1"), expectedMeta);
    const blob = await s.getBlob("b1");
    assert.ok(blob?.data instanceof Uint8Array);
    assert.deepEqual([...blob.data], [...data]);
    assert.equal(await s.getBlob("b2"), null);
    assert.equal(await s.getBlobMeta("b2"), null);
    await s.putBlob({ id: "empty", roomId: "ops", owner: A, data: new Uint8Array() });
    assert.equal((await s.getBlob("empty"))?.data.byteLength, 0);
  });

  test("putBlob refuses a duplicate id and leaves the original bytes", async (s) => {
    await s.createRoom(room("ops"));
    await s.createRoom(room("dev"));
    await s.putBlob({ id: "b1", roomId: "ops", owner: A, data: new Uint8Array([1]) });
    await assert.rejects(
      s.putBlob({ id: "b1", roomId: "dev", owner: B, data: new Uint8Array([2, 2]) }),
      (e) => e instanceof BlobExistsError && e.code === "blob_exists",
    );
    const b = await s.getBlob("b1");
    assert.deepEqual([...b!.data], [1]);
    assert.equal(b?.owner, A);
  });

  test("putBlob into an unknown room is NotFoundError and stores nothing", async (s) => {
    await assert.rejects(
      s.putBlob({ id: "b1", roomId: "nope", owner: A, data: new Uint8Array([1]) }),
      (e) => e instanceof NotFoundError && e.code === "not_found",
    );
    assert.equal(await s.getBlobMeta("b1"), null);
  });

  test("a blob larger than a NATS message round-trips", async (s) => {
    await s.createRoom(room("ops"));
    const data = new Uint8Array(3 * 1024 * 1024 + 17);
    for (let i = 0; i < data.length; i += 4096) data[i] = i % 251;
    await s.putBlob({ id: "big", roomId: "ops", owner: A, data });
    const b = await s.getBlob("big");
    assert.equal(b?.size, data.byteLength);
    assert.ok(b && b.data.every((v, i) => v === data[i]));
  });

  test("deleteBlob removes a blob and fails for an absent one", async (s) => {
    await s.createRoom(room("ops"));
    await s.putBlob({ id: "b1", roomId: "ops", owner: A, data: new Uint8Array([1]) });
    await s.deleteBlob("b1");
    assert.equal(await s.getBlob("b1"), null);
    await assert.rejects(s.deleteBlob("b1"), NotFoundError);
    await assert.rejects(
      s.putBlob({ id: "b2", roomId: "ops", owner: A, data: "text" as never }),
      InvalidInputError,
    );
  });

  // ---- the auth callout's read ----

  test("getUserAccess reads what getUser and listRoomsForMember read", async (s) => {
    assert.deepEqual(await s.getUserAccess(A), { user: null, rooms: [] });
    await s.addUser(user(A, { handle: "ada" }));
    await s.createRoom(room("b"));
    await s.createRoom(room("a"));
    await s.createRoom(room("c"));
    for (const id of ["b", "a"]) {
      await s.addMember({ roomId: id, signPub: A, role: "member", addedBy: B, change: null });
    }
    const access = await s.getUserAccess(A);
    assert.deepEqual(access, {
      user: await s.getUser(A),
      rooms: await s.listRoomsForMember(A),
    });
    assert.deepEqual(access.rooms.map((r) => r.id), ["a", "b"]);
  });

  // The callout decides logins on this read, and SQLite answers it from
  // memory while it can prove nothing changed: every write below must show
  // at the very next read, whether this handle or another process made it,
  // with no wait for a change feed.
  testWith(
    "getUserAccess sees every write at once, from this handle and from another",
    async (s, another) => {
      const other = await another();
      try {
        const reads = async () => {
          const a = await s.getUserAccess(A);
          assert.deepEqual(await s.getUserAccess(A), a, "a repeated read answers the same");
          return a;
        };
        await s.addUser(user(A));
        await s.createRoom(room("ops"));
        await s.createRoom(room("dev"));
        assert.equal((await reads()).user?.status, "active");
        for (const [store, id] of [[s, "ops"], [other, "dev"]] as const) {
          await store.addMember({
            roomId: id,
            signPub: A,
            role: "member",
            addedBy: B,
            change: null,
          });
          assert.ok((await reads()).rooms.some((r) => r.id === id), `added to ${id}`);
        }
        await other.removeMember("dev", A);
        assert.deepEqual((await reads()).rooms.map((r) => r.id), ["ops"], "removed elsewhere");
        await s.removeMember("ops", A);
        assert.deepEqual((await reads()).rooms, [], "removed here");
        await other.addMember({
          roomId: "ops",
          signPub: A,
          role: "member",
          addedBy: B,
          change: null,
        });
        assert.deepEqual((await reads()).rooms.map((r) => r.id), ["ops"]);
        await other.deleteRoom("ops");
        assert.deepEqual((await reads()).rooms, [], "room deleted elsewhere");
        // A write to something else in between must not hide the next one.
        await s.addUser(user(B));
        assert.equal((await reads()).user?.status, "active");
        await other.revokeUser(A);
        assert.equal((await reads()).user?.status, "revoked", "revoked elsewhere");
        await s.addUser(user(C));
        assert.equal((await s.getUserAccess(C)).user?.status, "active");
        await s.revokeUser(C);
        assert.equal((await s.getUserAccess(C)).user?.status, "revoked", "revoked here");
      } finally {
        await other.close();
      }
    },
  );

  test("getUserAccess on a closed store throws instead of answering from memory", async (s) => {
    await s.addUser(user(A));
    await s.getUserAccess(A);
    await s.getUserAccess(A);
    await s.close();
    await assert.rejects(s.getUserAccess(A), StoreUnavailableError);
  });

  // ---- change feed ----

  testWith("watchChanges reports writes made through another handle", async (s, another) => {
    const other = await another();
    const seen: StoreChange[] = [];
    const watch = s.watchChanges((c) => seen.push(c));
    await watch.ready;
    try {
      await other.addUser(user(A));
      await waitFor(() => seen.some((c) => covers(c, { kind: "user", signPub: A })));
      seen.length = 0;
      await other.revokeUser(A);
      await waitFor(() => seen.some((c) => covers(c, { kind: "user", signPub: A })));
      seen.length = 0;
      await other.createRoom(room("ops"));
      await other.addMember({
        roomId: "ops",
        signPub: B,
        role: "member",
        addedBy: A,
        change: null,
      });
      await waitFor(() => seen.some((c) => covers(c, { kind: "room", roomId: "ops" })));
      seen.length = 0;
      await other.deleteRoom("ops");
      await waitFor(() => seen.some((c) => covers(c, { kind: "room", roomId: "ops" })));
    } finally {
      await watch.stop();
      await other.close();
    }
  });

  test("watchChanges reports this handle's writes and stops when asked", async (s) => {
    const seen: StoreChange[] = [];
    const watch = s.watchChanges((c) => seen.push(c));
    await watch.ready;
    await s.addUser(user(A));
    await waitFor(() => seen.some((c) => covers(c, { kind: "user", signPub: A })));
    await watch.stop();
    seen.length = 0;
    await s.addUser(user(B));
    // Stopped: give a live feed ample time to deliver, then require silence.
    await new Promise((r) => setTimeout(r, 600));
    assert.deepEqual(seen, []);
  });

  // ---- exact storage ----

  test(
    "generated strings: what is accepted reads back identical, what is refused changes nothing",
    async (s) => {
      // The store accepts exactly what lib/grammar.ts accepts (the API's
      // rule), so nothing the API lets through can be cut or rewritten here:
      // SQLite once kept "chat.ops\0x" as "chat.ops", another room's subject.
      const SEED = 0x5eed8;
      const show = (i: number, v: string) =>
        `seed ${SEED} case ${i}: ${JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v)}`;
      await s.createRoom(room("prop", { subject: "prop.log" }));
      const subjects = new Set(["prop.log"]);
      let seq = 0;
      const cases = generatedStrings(SEED, 150);
      for (const [i, v] of cases.entries()) {
        const why = show(i, v);
        const refused = (e: unknown) =>
          e instanceof InvalidInputError && e.code === "invalid_input";

        // A handle.
        const pub = (i + 1).toString(16).padStart(64, "0");
        const usersBefore = (await s.listUsers()).length;
        if (handleViolation(v) === null) {
          await s.addUser(user(pub, { handle: v }));
          assert.equal((await s.getUser(pub))?.handle, v, why);
        } else {
          await assert.rejects(s.addUser(user(pub, { handle: v })), refused, why);
          assert.equal(await s.getUser(pub), null, why);
          assert.equal((await s.listUsers()).length, usersBefore, why);
        }

        // A room subject.
        const id = `p${i}`;
        if (subjectViolation(v) === null && !subjects.has(v)) {
          await s.createRoom(room(id, { subject: v }));
          subjects.add(v);
          assert.equal((await s.getRoom(id))?.subject, v, why);
          assert.equal((await s.getRoomBySubject(v))?.id, id, why);
        } else {
          await assert.rejects(
            s.createRoom(room(id, { subject: v })),
            (e) => refused(e) || (subjects.has(v) && e instanceof RoomExistsError),
            why,
          );
          assert.equal(await s.getRoom(id), null, why);
          if (!subjects.has(v)) await assert.rejects(s.getRoomBySubject(v), refused, why);
        }

        // A stored text (a signed change is kept verbatim).
        if (textViolation(v, { maxLength: MAX_TEXT_LENGTH, lineBreaks: true }) === null) {
          await s.applyRoomChange("prop", seq, { text: v, sig: "AAAA" }, NO_MEMBERS);
          seq++;
          assert.equal((await s.listRoomChanges("prop"))[seq - 1]?.text, v, why);
        } else {
          await assert.rejects(
            s.applyRoomChange("prop", seq, { text: v, sig: "AAAA" }, NO_MEMBERS),
            refused,
            why,
          );
          assert.equal((await s.listRoomChanges("prop")).length, seq, why);
        }
      }
      // Every accepted text, in order, byte for byte.
      const texts = cases.filter((v) =>
        textViolation(v, { maxLength: MAX_TEXT_LENGTH, lineBreaks: true }) === null
      );
      assert.deepEqual((await s.listRoomChanges("prop")).map((c) => c.text), texts);
      // The generator must reach both sides of every boundary it is for.
      assert.ok(texts.length > 10 && texts.length < cases.length);
      assert.ok(subjects.size > 10 && subjects.size < cases.length);
    },
  );
  test("blobUsageOf counts one owner's blobs and bytes, following deletes", async (s) => {
    assert.deepEqual(await s.blobUsageOf(A), { count: 0, bytes: 0 });
    await s.createRoom(room("ops"));
    await s.createRoom(room("dev"));
    await s.putBlob({ id: "b1", roomId: "ops", owner: A, data: new Uint8Array(5) });
    await s.putBlob({ id: "b2", roomId: "dev", owner: A, data: new Uint8Array(7) });
    await s.putBlob({ id: "b3", roomId: "ops", owner: B, data: new Uint8Array(11) });
    await s.putBlob({ id: "b4", roomId: "ops", owner: A, data: new Uint8Array(0) });
    assert.deepEqual(await s.blobUsageOf(A), { count: 3, bytes: 12 });
    assert.deepEqual(await s.blobUsageOf(B), { count: 1, bytes: 11 });
    await s.deleteBlob("b1");
    assert.deepEqual(await s.blobUsageOf(A), { count: 2, bytes: 7 });
    // Deleting a room deletes its blobs, and with them their share of the quota.
    await s.deleteRoom("dev");
    assert.deepEqual(await s.blobUsageOf(A), { count: 1, bytes: 0 });
    assert.deepEqual(await s.blobUsageOf(C), { count: 0, bytes: 0 });
    await assert.rejects(s.blobUsageOf("not-a-key"), InvalidInputError);
  });

  // ---- lifecycle ----

  test("a closed store fails with StoreUnavailableError and close can repeat", async (s) => {
    assert.ok(s.kind === "sqlite" || s.kind === "kv");
    await s.close();
    await s.close();
    await assert.rejects(
      s.getUser(A),
      (e) => e instanceof StoreUnavailableError && e instanceof StoreError,
    );
  });
}
