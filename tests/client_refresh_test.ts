import { applyChange, signChange, verifyLog } from "../lib/e2e/membership.ts";
import { stateAfter } from "../server/rooms/state.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { addBusUser } from "./helpers/bus.ts";
import { clientBus } from "./helpers/client_bus.ts";
import { waitFor } from "./helpers/wait.ts";

Deno.test("a session refresh reloads the rooms that changed while no notice came, and only those", async () => {
  const b = await clientBus();
  try {
    const alice = await addBusUser(b.store, "alice");
    const bob = await addBusUser(b.store, "bob");
    const carol = await addBusUser(b.store, "carol");
    const ca = await b.client(alice);
    const changed = await ca.createRoom("refresh.changed", undefined, { members: [bob.hex] });
    const same = await ca.createRoom("refresh.same", undefined, { members: [bob.hex] });
    const cb = await b.client(bob);
    await cb.room(changed.id);
    await cb.room(same.id);

    // Alice adds Carol, but the change reaches only the store (another
    // writer): no route ran, so no room notice reached Bob, as when one is
    // sent while his connection is down.
    const log = (await b.store.listRoomChanges(changed.id)).map((c) => ({
      text: c.text,
      sig: c.sig,
    }));
    const before = verifyLog(changed.id, log);
    const change = signChange({
      room: changed.id,
      seq: 1,
      prev: before.head,
      op: "add",
      member: carol.hex,
      kex: carol.identity.kexPubHex,
      kexSig: carol.identity.kexSigHex,
      role: "member",
      epoch: 1,
      by: alice.hex,
      at: Date.now(),
    }, alice.identity.signer);
    const after = applyChange(before, change);
    await b.store.applyRoomChange(changed.id, 1, change, stateAfter(after, [...log, change]));
    assertEquals((await cb.room(changed.id)).state.seq, 0, "Bob has not seen it yet");

    const from = b.s.lines.length;
    await cb.refreshSession();
    const held = await cb.room(changed.id);
    assertEquals(held.state.seq, 1);
    assert(held.state.members.has(carol.hex), "Carol is a member in Bob's view");
    // A sentinel request after the refresh: serve logs each request before
    // answering it, so once the sentinel's line is read, every line of the
    // refresh's requests is too.
    const gets = () =>
      b.s.lines.slice(from)
        .filter((l) => l.msg === "http" && l.method === "GET")
        .map((l) => String(l.path));
    await cb.control.getUser(bob.hex);
    await waitFor(() => gets().includes(`/v1/users/${bob.hex}`), {
      what: "the sentinel request in serve's access log",
    });
    const reads = gets();
    assertEquals(reads.filter((p) => p === "/v1/rooms").length, 1, `one list: ${reads}`);
    assert(reads.includes(`/v1/rooms/${changed.id}`), `the changed room re-read: ${reads}`);
    assert(
      !reads.some((p) => p.startsWith(`/v1/rooms/${same.id}`)),
      `the unchanged room is not re-read: ${reads}`,
    );
  } finally {
    await b.stop();
  }
});

Deno.test("GET /v1/rooms?view=summary lists the caller's rooms without members or log", async () => {
  const b = await clientBus();
  try {
    const alice = await addBusUser(b.store, "alice");
    const bob = await addBusUser(b.store, "bob");
    const ca = await b.client(alice);
    const room = await ca.createRoom("summary.room", undefined, { members: [bob.hex] });
    await ca.addMembers(room, [(await addBusUser(b.store, "carol")).hex]);
    await ca.createRoom("summary.alone");
    const res = await ca.control.request("GET", "/v1/rooms?view=summary");
    assertEquals(res.status, 200);
    const { rooms } = await res.json();
    assertEquals(rooms.length, 2);
    const listed = rooms.find((r: { id: string }) => r.id === room.id);
    assertEquals(listed, {
      id: room.id,
      subject: "summary.room",
      policy: { encrypt: true, sign: true, persist: false },
      epoch: 1,
    });
    assertEquals(
      (await ca.listRooms()).map((r) => r.subject).sort(),
      ["summary.alone", "summary.room"],
    );
    const bad = await ca.control.request("GET", "/v1/rooms?view=all");
    assertEquals(bad.status, 400);
    assertEquals((await bad.json()).error, "invalid_view");
  } finally {
    await b.stop();
  }
});
