import assert from "node:assert/strict";
import { createClient } from "@libsql/client";
import { key, storeContract } from "./store_contract.ts";
import { openSqliteStore, SqliteStore } from "../lib/store/sqlite.ts";
import { LATEST_SCHEMA_VERSION, migrate, MIGRATIONS } from "../lib/store/migrations.ts";
import { SchemaTooNewError, StoreUnavailableError } from "../lib/store/store.ts";

storeContract("sqlite", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-store-" });
  const store = await openSqliteStore(`${dir}/control.db`);
  return {
    store,
    cleanup: () => Deno.remove(dir, { recursive: true }),
    another: () => openSqliteStore(`${dir}/control.db`),
  };
});

/** Runs `fn` with a fresh temp dir that is removed afterwards. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-store-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Reads a DB with a separate client, bypassing the store. */
async function query(path: string, sql: string) {
  const db = createClient({ url: `file:${path}` });
  try {
    return (await db.execute(sql)).rows;
  } finally {
    db.close();
  }
}

const A = key(1);

Deno.test("sqlite store creates a missing parent dir 0700 and the file 0600", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/nested/data/control.db`;
    const store = await openSqliteStore(path);
    await store.addUser({ signPub: A, kexPub: null, kexSig: null, handle: "a", role: "admin" });
    await store.close();
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(`${dir}/nested/data`)).mode! & 0o777, 0o700);
    for await (const e of Deno.readDir(`${dir}/nested/data`)) {
      // WAL side files hold the same data, so they must be as private.
      const mode = (await Deno.stat(`${dir}/nested/data/${e.name}`)).mode! & 0o777;
      assert.equal(mode & 0o077, 0, `${e.name} is ${mode.toString(8)}`);
    }
  });
});

Deno.test("sqlite store tightens an existing 0644 file to 0600", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/control.db`;
    await Deno.writeFile(path, new Uint8Array());
    await Deno.chmod(path, 0o644);
    const store = await openSqliteStore(path);
    await store.close();
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
  });
});

Deno.test("sqlite store leaves the file in WAL journal mode", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/control.db`;
    const store = await openSqliteStore(path);
    await store.close();
    // journal_mode=WAL is persistent in the file, so a fresh client sees it.
    assert.equal((await query(path, "PRAGMA journal_mode"))[0].journal_mode, "wal");
  });
});

Deno.test("sqlite store records migrations once and reopening applies none again", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/control.db`;
    await (await openSqliteStore(path)).close();
    await (await openSqliteStore(path)).close();
    const rows = await query(path, "SELECT version, name FROM schema_migrations ORDER BY version");
    assert.deepEqual(
      rows.map((r) => [Number(r.version), r.name]),
      MIGRATIONS.map((m) => [m.version, m.name]),
    );
    assert.equal(Number(rows[rows.length - 1].version), LATEST_SCHEMA_VERSION);
  });
});

Deno.test("sqlite store keeps its data across close and reopen", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/control.db`;
    let store = await openSqliteStore(path);
    await store.addUser({ signPub: A, kexPub: null, kexSig: null, handle: "ada", role: "admin" });
    await store.createRoom({
      id: "ops",
      subject: "room.ops",
      policy: { encrypt: true, sign: true, persist: true },
      createdBy: A,
    });
    await store.addMember({ roomId: "ops", signPub: A, role: "admin", addedBy: A, change: "c" });
    await store.setRoomEpoch("ops", 0, 1);
    await store.putSealedKeys("ops", 1, [{ recipient: A, sealed: "AAAA", sealedBy: A }]);
    await store.putBlob({ id: "b", roomId: "ops", owner: A, data: new Uint8Array([9]) });
    await store.rememberNonce("n", Date.now() + 60_000);
    await store.close();

    store = await openSqliteStore(path);
    try {
      assert.equal((await store.getUser(A))?.handle, "ada");
      assert.equal((await store.getRoom("ops"))?.epoch, 1);
      assert.equal((await store.getMember("ops", A))?.change, "c");
      assert.equal((await store.getSealedKey("ops", 1, A))?.sealed, "AAAA");
      assert.deepEqual([...(await store.getBlob("b"))!.data], [9]);
      assert.equal(await store.rememberNonce("n", Date.now() + 60_000), false);
    } finally {
      await store.close();
    }
  });
});

Deno.test("sqlite store refuses a database with a newer schema and leaves it as is", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/control.db`;
    await (await openSqliteStore(path)).close();
    const future = LATEST_SCHEMA_VERSION + 1;
    await query(
      path,
      `INSERT INTO schema_migrations (version, name, applied_at) VALUES (${future}, 'future', 0)`,
    );
    await assert.rejects(openSqliteStore(path), (e) => {
      assert.ok(e instanceof SchemaTooNewError);
      assert.equal(e.code, "schema_too_new");
      assert.match(
        e.message,
        new RegExp(`version ${future} is newer .*\\(${LATEST_SCHEMA_VERSION}\\)`),
      );
      return true;
    });
    const rows = await query(path, "SELECT MAX(version) AS v FROM schema_migrations");
    assert.equal(Number(rows[0].v), future);
  });
});

Deno.test("sqlite store refuses a file that is not a database with StoreUnavailableError", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/control.db`;
    await Deno.writeTextFile(path, "this is not a sqlite database ".repeat(64));
    await assert.rejects(openSqliteStore(path), (e) => {
      assert.ok(e instanceof StoreUnavailableError);
      assert.match(e.message, /cannot open store at .*control\.db/);
      return true;
    });
  });
});

Deno.test("sqlite stores sharing one file accept a concurrent nonce exactly once", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/control.db`;
    const stores = await Promise.all([1, 2, 3].map(() => SqliteStore.open(path)));
    try {
      const exp = Date.now() + 60_000;
      const results = await Promise.all(
        stores.flatMap((s) => [s.rememberNonce("shared", exp), s.rememberNonce("shared", exp)]),
      );
      assert.equal(results.filter((r) => r).length, 1);
    } finally {
      for (const s of stores) await s.close();
    }
  });
});

Deno.test("sqlite store opens a path with spaces, percent and hash characters", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/odd dir %20#?/control.db`;
    const store = await openSqliteStore(path);
    await store.close();
    assert.ok((await Deno.stat(path)).isFile);
  });
});

Deno.test("sqlite store upgrades a schema-1 file to the change log and keeps its rooms", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/control.db`;
    const db = createClient({ url: `file:${path}` });
    try {
      await migrate(db, MIGRATIONS.slice(0, 1));
      await db.execute(
        `INSERT INTO rooms (id, subject, encrypt, sign, persist, created_by, created_at, epoch)
         VALUES ('ops', 'room.ops', 1, 1, 0, '${A}', 1, 0)`,
      );
    } finally {
      db.close();
    }
    const store = await openSqliteStore(path);
    try {
      assert.equal((await store.getRoom("ops"))?.subject, "room.ops");
      assert.deepEqual(await store.listRoomChanges("ops"), []);
      await store.applyRoomChange("ops", 0, { text: "c\n", sig: "AAAA" }, {
        members: [],
        epoch: 0,
      });
      assert.equal((await store.listRoomChanges("ops")).length, 1);
    } finally {
      await store.close();
    }
  });
});
