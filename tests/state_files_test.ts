/**
 * Files a user names (an identity, a receive state) are read only when they
 * are regular files: a FIFO is refused at once instead of hanging the
 * process, and a receive state whose entries have the wrong types is a
 * ReceiveStateError, never a TypeError and never trusted in part.
 */

import { openReceiveState, ReceiveStateError } from "../lib/client/receive_state.ts";
import { NotRegularFileError, readRegularFile } from "../lib/fs/read_regular.ts";
import { generateIdentity, IdentityError, loadIdentity } from "../lib/identity/identity.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";

const ME = "ab".repeat(32);
const ROOM = "0123456789abcdef0123456789abcdef";
const CHAIN = `3/${"cd".repeat(32)}/${"ef".repeat(16)}`;

async function mkfifo(path: string): Promise<void> {
  const r = await new Deno.Command("mkfifo", { args: ["-m", "600", path] }).output();
  if (!r.success) throw new Error(`mkfifo ${path} failed`);
}

/** Fails the test if `run` has not settled within `ms` (a blocked open never settles). */
async function within<T>(ms: number, what: string, run: () => Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not return within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([run(), late]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("a FIFO, a directory or a symlink to a FIFO is refused at once, by type", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-fifo-" });
  try {
    await mkfifo(`${dir}/fifo`);
    await Deno.symlink(`${dir}/fifo`, `${dir}/link`);
    await Deno.mkdir(`${dir}/dir`);
    for (const [name, kind] of [["fifo", "FIFO"], ["link", "FIFO"], ["dir", "directory"]]) {
      const err = await within(
        2000,
        `reading ${name}`,
        () =>
          readRegularFile(`${dir}/${name}`, 1024).then(
            () => null,
            (e) => e,
          ),
      );
      assert(err instanceof NotRegularFileError, `${name}: ${err}`);
      assertEquals(err.kind, kind);
    }
    for (const name of ["fifo", "link", "dir"]) {
      await assertRejects(
        () => within(2000, `loadIdentity(${name})`, () => loadIdentity(`${dir}/${name}`)),
        IdentityError,
        "not a regular file",
      );
      await assertRejects(
        () =>
          within(2000, `openReceiveState(${name})`, () => openReceiveState(`${dir}/${name}`, ME)),
        ReceiveStateError,
        "not a regular file",
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a regular file and a symlink to one are read; a missing file is NotFound", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-regular-" });
  try {
    await Deno.writeTextFile(`${dir}/f`, "hello");
    await Deno.symlink(`${dir}/f`, `${dir}/l`);
    assertEquals(new TextDecoder().decode((await readRegularFile(`${dir}/l`, 5)).bytes), "hello");
    await assertRejects(() => readRegularFile(`${dir}/f`, 4), Error, "larger than 4 bytes");
    await assertRejects(() => readRegularFile(`${dir}/none`, 4), Deno.errors.NotFound);
    const id = generateIdentity("ada");
    assertEquals(
      (await openReceiveState(`${dir}/none.state`, id.signPubHex)).room(ROOM),
      undefined,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a receive state with wrong-typed or null entries is a ReceiveStateError, never a TypeError", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-state-" });
  const good = { id: CHAIN, at: 4, ck: btoa("k".repeat(32)), frame: 2 };
  const cases: Array<[string, unknown]> = [
    ["rooms null", null],
    ["rooms an array", [{ chains: [], retired: [] }]],
    ["a room null", { [ROOM]: null }],
    ["a room key not an id", { "not-a-room": { chains: [], retired: [] } }],
    ["chains null", { [ROOM]: { chains: null, retired: [] } }],
    ["retired a string", { [ROOM]: { chains: [], retired: CHAIN } }],
    ["a chain null", { [ROOM]: { chains: [null], retired: [] } }],
    ["a chain an array", { [ROOM]: { chains: [[CHAIN, 4]], retired: [] } }],
    ["at a string", { [ROOM]: { chains: [{ ...good, at: "4" }], retired: [] } }],
    ["at NaN", { [ROOM]: { chains: [{ ...good, at: "NaN" }], retired: [] } }],
    ["at negative", { [ROOM]: { chains: [{ ...good, at: -2 }], retired: [] } }],
    ["at huge", { [ROOM]: { chains: [{ ...good, at: 2 ** 60 }], retired: [] } }],
    ["at fractional", { [ROOM]: { chains: [{ ...good, at: 1.5 }], retired: [] } }],
    ["frame null", { [ROOM]: { chains: [{ ...good, frame: null }], retired: [] } }],
    ["ck a number", { [ROOM]: { chains: [{ ...good, ck: 7 }], retired: [] } }],
    ["ck too short", { [ROOM]: { chains: [{ ...good, ck: btoa("k") }], retired: [] } }],
    ["id missing", { [ROOM]: { chains: [{ at: 4 }], retired: [] } }],
    ["id malformed", { [ROOM]: { chains: [{ ...good, id: "3/x/y" }], retired: [] } }],
    ["a retired entry null", { [ROOM]: { chains: [], retired: [null] } }],
    ["a retired entry an object", { [ROOM]: { chains: [], retired: [{ id: CHAIN }] } }],
    ["an extra field", { [ROOM]: { chains: [], retired: [], more: {} } }],
    ["nested deeper", { [ROOM]: { chains: [{ ...good, id: { id: CHAIN } }], retired: [] } }],
  ];
  try {
    for (const [name, rooms] of cases) {
      const path = `${dir}/state.json`;
      await Deno.writeTextFile(path, JSON.stringify({ v: 1, signPub: ME, rooms }));
      const err = await openReceiveState(path, ME).then(() => null, (e) => e);
      assert(err instanceof ReceiveStateError, `${name}: ${err}`);
    }
    // The shape this library writes is accepted.
    const path = `${dir}/state.json`;
    await Deno.writeTextFile(
      path,
      JSON.stringify({
        v: 1,
        signPub: ME,
        rooms: { [ROOM]: { chains: [good], retired: [CHAIN] } },
      }),
    );
    assertEquals((await openReceiveState(path, ME)).room(ROOM)?.chains, [good]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
