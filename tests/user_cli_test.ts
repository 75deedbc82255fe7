import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { type CliRun as Run, runUnibus as unibus, stderrLines } from "./helpers/serve_process.ts";
import { toHex } from "../lib/identity/hex.ts";
import { generateIdentity, kexBindingMessage } from "../lib/identity/identity.ts";
import { openSqliteStore } from "../lib/store/sqlite.ts";
import type { User } from "../lib/store/store.ts";

/** Exit 2 with exactly one line on stderr that includes `includes`. */
function assertUsage(r: Run, includes: string, label: string): void {
  assertEquals(r.code, 2, `${label}: exit status (stderr: ${r.stderr})`);
  const lines = stderrLines(r);
  assertEquals(lines.length, 1, `${label}: one stderr line, got ${JSON.stringify(r.stderr)}`);
  assert(lines[0].includes(includes), `${label}: ${JSON.stringify(lines[0])} lacks "${includes}"`);
}

/** Exit 1 with exactly one stderr line equal to `line`. */
function assertFailure(r: Run, line: string, label: string): void {
  assertEquals(r.code, 1, `${label}: exit status (stderr: ${r.stderr})`);
  assertEquals(stderrLines(r), [line], label);
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-user-cli-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

async function listJson(db: string): Promise<Array<Record<string, unknown>>> {
  const r = await unibus(["user", "list", "--json", "--db", db]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.lines.length, 1, "list --json prints one line");
  return r.lines[0] as unknown as Array<Record<string, unknown>>;
}

async function storedUser(db: string, signPub: string): Promise<User | null> {
  const store = await openSqliteStore(db);
  try {
    return await store.getUser(signPub);
  } finally {
    await store.close();
  }
}

Deno.test("user add rejects every invalid input with exit 2, one stderr line, nothing written", async () => {
  await withTempDir(async (dir) => {
    const db = `${dir}/never/unibus.db`;
    const id = generateIdentity();
    const other = generateIdentity();
    const ok = ["--handle", "ada", "--sign-pub", id.signPubHex, "--db", db];
    const smallOrder = "01" + "00".repeat(31);
    const lowOrderKexSig = toHex(id.signer.sign(kexBindingMessage(id.signPubHex, "00".repeat(32))));
    const cases: Array<[string, string[], string]> = [
      ["missing handle", ["--sign-pub", id.signPubHex, "--db", db], "--handle is required"],
      ["empty handle", [...ok, "--handle", ""], "--handle must be 1-64 printable"],
      ["blank handle", [...ok, "--handle", "   "], "--handle must be 1-64 printable"],
      ["control char in handle", [...ok, "--handle", "a\tb"], "--handle must be 1-64"],
      ["65-char handle", [...ok, "--handle", "x".repeat(65)], "--handle must be 1-64"],
      ["missing sign-pub", ["--handle", "ada", "--db", db], "--sign-pub is required"],
      ["short sign-pub", [...ok, "--sign-pub", "ab".repeat(31)], "--sign-pub must be 64 hex"],
      ["non-hex sign-pub", [...ok, "--sign-pub", "zz".repeat(32)], "--sign-pub must be 64 hex"],
      [
        "small-order sign-pub",
        [...ok, "--sign-pub", smallOrder],
        `--sign-pub ${smallOrder} is not a valid Ed25519 public key (small-order or malformed)`,
      ],
      [
        "all-zero sign-pub",
        [...ok, "--sign-pub", "00".repeat(32)],
        "is not a valid Ed25519 public key (small-order or malformed)",
      ],
      ["bad nkey", [...ok, "--sign-pub", "U" + "A".repeat(55)], "--sign-pub"],
      ["kex-pub without kex-sig", [...ok, "--kex-pub", id.kexPubHex], "--kex-pub needs --kex-sig"],
      ["kex-sig without kex-pub", [...ok, "--kex-sig", id.kexSigHex], "--kex-sig needs --kex-pub"],
      [
        "non-hex kex-pub",
        [...ok, "--kex-pub", "g".repeat(64), "--kex-sig", id.kexSigHex],
        "--kex-pub must be 64 hex",
      ],
      [
        "short kex-sig",
        [...ok, "--kex-pub", id.kexPubHex, "--kex-sig", id.kexSigHex.slice(2)],
        "--kex-sig must be 128 hex",
      ],
      [
        "kex-pub swapped for another user's",
        [...ok, "--kex-pub", other.kexPubHex, "--kex-sig", id.kexSigHex],
        "--kex-sig does not verify",
      ],
      [
        "binding signed by another key",
        [...ok, "--kex-pub", other.kexPubHex, "--kex-sig", other.kexSigHex],
        "--kex-sig does not verify",
      ],
      [
        "low-order kex-pub, correctly signed",
        [...ok, "--kex-pub", "00".repeat(32), "--kex-sig", lowOrderKexSig],
        "is not a valid X25519 public key",
      ],
      ["unknown role", [...ok, "--role", "owner"], "--role must be admin or member"],
      [
        "kv store with --db",
        [...ok, "--store", "kv"],
        "--db is for --store sqlite",
      ],
      [
        "kv flag on sqlite",
        [...ok, "--nats-url", "nats://127.0.0.1:1"],
        "--nats-url needs --store kv",
      ],
      ["unknown store", [...ok, "--store", "etcd"], "--store must be sqlite or kv"],
      ["empty db", [...ok, "--db", ""], "--db must not be empty"],
      ["unknown option", [...ok, "--bogus"], "unknown option --bogus"],
      ["option without value", [...ok, "--role"], "--role needs a value"],
      ["positional", [...ok, "extra"], 'unexpected argument "extra"'],
    ];
    const runs = await Promise.all(cases.map(([, args]) => unibus(["user", "add", ...args])));
    cases.forEach(([label, , includes], i) => {
      assertUsage(runs[i], includes, label);
      assert(runs[i].stderr.startsWith("unibus user: "), label);
      assertEquals(runs[i].stdout, "", `${label}: nothing on stdout`);
    });
    assert(!(await exists(`${dir}/never`)), "no database or directory was created");
  });
});

Deno.test("user subcommand mistakes are usage errors and --help works everywhere", async () => {
  await withTempDir(async (dir) => {
    const db = `${dir}/unibus.db`;
    const [unknown, missing, revokeBad, revokeNone, revokeTwo, listKv] = await Promise.all([
      unibus(["user", "frobnicate"]),
      unibus(["user"]),
      unibus(["user", "revoke", "not-hex", "--db", db]),
      unibus(["user", "revoke", "--db", db]),
      unibus(["user", "revoke", "ab".repeat(32), "cd".repeat(32), "--db", db]),
      unibus(["user", "list", "--store", "kv", "--db", db]),
    ]);
    assertUsage(unknown, 'unknown subcommand "frobnicate"', "unknown subcommand");
    assertUsage(missing, "missing subcommand", "no subcommand");
    assertUsage(revokeBad, "KEY must be 64 hex", "revoke with invalid hex");
    assertUsage(revokeNone, "needs the user's KEY", "revoke without key");
    assertUsage(revokeTwo, "unexpected argument", "revoke with two keys");
    assertUsage(listKv, "--db is for --store sqlite", "list --store kv --db");
    assert(!(await exists(db)));

    const helps = await Promise.all([
      unibus(["user", "--help"]),
      unibus(["user", "add", "--help"]),
      unibus(["user", "list", "--help"]),
      unibus(["user", "revoke", "--help"]),
    ]);
    const want = [
      "usage: unibus user <subcommand>",
      "usage: unibus user add",
      "usage: unibus user list",
      "usage: unibus user revoke",
    ];
    helps.forEach((r, i) => {
      assertEquals(r.code, 0, r.stderr);
      assert(r.stdout.startsWith(want[i]), r.stdout);
      assertEquals(r.stderr, "");
    });
    assert(helps[1].stdout.includes("--kex-sig HEX"));
  });
});

Deno.test("user add registers a user, creating the db and its directory, keys lowercased", async () => {
  await withTempDir(async (dir) => {
    const db = `${dir}/new/sub/unibus.db`;
    const ada = generateIdentity();
    const r = await unibus([
      "user",
      "add",
      "--handle",
      "ada lovelace",
      "--sign-pub",
      ada.signPubHex.toUpperCase(),
      "--kex-pub",
      ada.kexPubHex.toUpperCase(),
      "--kex-sig",
      ada.kexSigHex,
      "--role",
      "admin",
      "--db",
      db,
    ]);
    assertEquals(r.code, 0, r.stderr);
    assertMatch(r.stdout, new RegExp(`^added user ${ada.signPubHex} `));
    assertEquals((await Deno.stat(db)).mode! & 0o777, 0o600);

    // An nkey is accepted for --sign-pub and means the same key.
    const bob = generateIdentity();
    const r2 = await unibus(["user", "add", "--handle", "bob", "--sign-pub", bob.nkey, "--db", db]);
    assertEquals(r2.code, 0, r2.stderr);

    const users = await listJson(db);
    assertEquals(users.length, 2);
    const a = users.find((u) => u.handle === "ada lovelace")!;
    assertEquals(a.signPub, ada.signPubHex);
    assertEquals(a.nkey, ada.nkey);
    assertEquals(a.kexPub, ada.kexPubHex);
    assertEquals(a.kexSig, ada.kexSigHex);
    assertEquals(a.role, "admin");
    assertEquals(a.status, "active");
    const b = users.find((u) => u.handle === "bob")!;
    assertEquals(b.signPub, bob.signPubHex);
    assertEquals(b.role, "member", "member is the default role");
    assertEquals(b.kexPub, null);

    const table = await unibus(["user", "list", "--db", db]);
    assertEquals(table.code, 0, table.stderr);
    const rows = table.stdout.split("\n");
    assertMatch(rows[0], /^HANDLE\s+ROLE\s+STATUS\s+SIGN_PUB\s+MAX_CONN\s+CREATED$/);
    assertEquals(rows.length, 3);
    assert(rows.some((row) => row.includes(ada.signPubHex) && row.includes("admin")));
    assertMatch(rows[1], /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });
});

Deno.test("re-adding a registered key fails with exit 1 and leaves the row untouched", async () => {
  await withTempDir(async (dir) => {
    const db = `${dir}/unibus.db`;
    const ada = generateIdentity();
    const add = (handle: string, role: string) =>
      unibus([
        "user",
        "add",
        "--handle",
        handle,
        "--sign-pub",
        ada.signPubHex,
        "--role",
        role,
        "--db",
        db,
      ]);
    assertEquals((await add("ada", "admin")).code, 0);
    const before = await storedUser(db, ada.signPubHex);

    const again = await add("mallory", "member");
    assertFailure(
      again,
      `unibus user: user ${ada.signPubHex} already registered (unchanged); revoke it first to replace`,
      "re-add",
    );
    assertEquals(again.stdout, "");
    // Uppercase spelling of the same key is the same user.
    const upper = await unibus([
      "user",
      "add",
      "--handle",
      "x",
      "--sign-pub",
      ada.signPubHex.toUpperCase(),
      "--db",
      db,
    ]);
    assertEquals(upper.code, 1, upper.stderr);

    assertEquals(await storedUser(db, ada.signPubHex), before, "row unchanged in the store");
    const users = await listJson(db);
    assertEquals(users.length, 1);
    assertEquals([users[0].handle, users[0].role, users[0].status], ["ada", "admin", "active"]);
  });
});

Deno.test("revoke flips status to revoked, keeps the row, and honours --db after the key", async () => {
  await withTempDir(async (dir) => {
    const db = `${dir}/unibus.db`;
    const ada = generateIdentity();
    const bob = generateIdentity();
    for (const [h, id] of [["ada", ada], ["bob", bob]] as const) {
      const r = await unibus([
        "user",
        "add",
        "--handle",
        h,
        "--sign-pub",
        id.signPubHex,
        "--db",
        db,
      ]);
      assertEquals(r.code, 0, r.stderr);
    }
    const before = await storedUser(db, ada.signPubHex);

    // seed 004: flags after the positional key must be honoured.
    const r = await unibus(["user", "revoke", ada.signPubHex, "--db", db]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout, `revoked user ${ada.signPubHex}`);
    const after = await storedUser(db, ada.signPubHex);
    assertEquals(after, { ...before!, status: "revoked" }, "only the status changed");
    assertEquals((await storedUser(db, bob.signPubHex))?.status, "active", "others untouched");

    // Flags before the key, uppercase key: idempotent, still one row.
    const again = await unibus(["user", "revoke", "--db", db, ada.signPubHex.toUpperCase()]);
    assertEquals(again.code, 0, again.stderr);
    assertEquals(again.stdout, `user ${ada.signPubHex} is already revoked (unchanged)`);

    // Re-adding a revoked key does not resurrect it.
    const readd = await unibus([
      "user",
      "add",
      "--handle",
      "ada2",
      "--sign-pub",
      ada.signPubHex,
      "--role",
      "admin",
      "--db",
      db,
    ]);
    assertEquals(readd.code, 1, readd.stderr);
    assertEquals(stderrLines(readd).length, 1);
    assertMatch(readd.stderr, /already registered and revoked \(unchanged\)/);
    assertEquals(await storedUser(db, ada.signPubHex), after);

    const users = await listJson(db);
    assertEquals(users.map((u) => [u.handle, u.status]).sort(), [["ada", "revoked"], [
      "bob",
      "active",
    ]]);
    const table = await unibus(["user", "list", "--db", db]);
    assert(
      table.stdout.split("\n").some((l) => l.includes(ada.signPubHex) && l.includes("revoked")),
    );
  });
});

Deno.test("revoking an unknown key is exit 1 with one line, and nothing changes", async () => {
  await withTempDir(async (dir) => {
    const db = `${dir}/unibus.db`;
    const ada = generateIdentity();
    await unibus(["user", "add", "--handle", "ada", "--sign-pub", ada.signPubHex, "--db", db]);
    const ghost = generateIdentity().signPubHex;
    const r = await unibus(["user", "revoke", ghost, "--db", db]);
    assertFailure(r, `unibus user: no user ${ghost} in ${db}`, "unknown key");
    assertEquals((await listJson(db)).map((u) => u.status), ["active"]);
  });
});

Deno.test("list and revoke on a missing db fail clearly and do not create it", async () => {
  await withTempDir(async (dir) => {
    const db = `${dir}/missing/unibus.db`;
    const [list, listJsonRun, revoke] = await Promise.all([
      unibus(["user", "list", "--db", db]),
      unibus(["user", "list", "--json", "--db", db]),
      unibus(["user", "revoke", generateIdentity().signPubHex, "--db", db]),
    ]);
    for (const r of [list, listJsonRun, revoke]) {
      assertFailure(r, `unibus user: no database at ${db}`, "missing db");
    }
    assert(!(await exists(`${dir}/missing`)));
  });
});

Deno.test("list on an empty db prints no users, and [] as JSON", async () => {
  await withTempDir(async (dir) => {
    const db = `${dir}/unibus.db`;
    await (await openSqliteStore(db)).close();
    const r = await unibus(["user", "list", "--db", db]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout, `no users in ${db}`);
    assertEquals(await listJson(db), []);
  });
});
