import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { type CliRun as Run, runUnibus as unibus, stderrLines } from "./helpers/serve_process.ts";
import { encodeIdentityFile, generateIdentity, loadIdentity } from "../lib/identity/identity.ts";
import { toHex } from "../lib/identity/hex.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-identity-cli-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The private key material of the file at `path`, as it could appear in output. */
async function secretsOf(path: string): Promise<string[]> {
  const f = JSON.parse(await Deno.readTextFile(path));
  return [f.sign_seed, f.kex_priv].flatMap((hex: string) => [hex, hex.toUpperCase()]);
}

function assertNoSecrets(text: string, secrets: string[], label: string): void {
  for (const s of secrets) {
    // A 16-character window catches partial or reformatted leaks too.
    for (let i = 0; i + 16 <= s.length; i += 8) {
      assert(!text.includes(s.slice(i, i + 16)), `${label} leaks private key material`);
    }
  }
}

Deno.test("identity new writes a 0600 file and prints only public keys", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/keys/ada.id.json`;
    const r = await unibus(["identity", "new", "--out", file, "--handle", "ada"]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stderr, "");
    assertEquals((await Deno.stat(file)).mode! & 0o777, 0o600);
    const id = await loadIdentity(file);
    assertEquals(id.handle, "ada");
    for (const pub of [id.signPubHex, id.nkey, id.kexPubHex, id.kexSigHex]) {
      assert(r.stdout.includes(pub), `stdout shows ${pub}`);
    }
    assertMatch(r.stdout, /^file {5}.+\nhandle {3}ada\nsign_pub /);
    assertMatch(r.stdout, /unibus user add --handle ada --sign-pub [0-9a-f]{64} --kex-pub/);
    assertNoSecrets(r.stdout, await secretsOf(file), "identity new");
  });
});

Deno.test("identity show prints public keys (table and one-line JSON) and no private hex", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/ada.id.json`;
    assertEquals((await unibus(["identity", "new", "--out", file])).code, 0);
    const id = await loadIdentity(file);
    const secrets = await secretsOf(file);

    const text = await unibus(["identity", "show", file]);
    assertEquals(text.code, 0, text.stderr);
    assertEquals(text.stdout.split("\n").map((l) => l.split(/\s+/)[0]), [
      "file",
      "handle",
      "sign_pub",
      "nkey",
      "kex_pub",
      "kex_sig",
    ]);
    assert(text.stdout.includes(`sign_pub ${id.signPubHex}`));
    assert(text.stdout.includes(`handle   (none)`));
    assertNoSecrets(text.stdout, secrets, "identity show");

    const json = await unibus(["identity", "show", file, "--json"]);
    assertEquals(json.code, 0, json.stderr);
    assertEquals(json.lines.length, 1, "JSON is one line");
    assertEquals(json.lines[0], {
      file,
      handle: null,
      signPub: id.signPubHex,
      nkey: id.nkey,
      kexPub: id.kexPubHex,
      kexSig: id.kexSigHex,
    });
    assertNoSecrets(json.stdout, secrets, "identity show --json");
  });
});

Deno.test("identity new refuses to overwrite an existing file (exit 1, one line, bytes kept)", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/ada.id.json`;
    assertEquals((await unibus(["identity", "new", "--out", file])).code, 0);
    const before = await Deno.readFile(file);
    const r = await unibus(["identity", "new", "--out", file, "--handle", "other"]);
    assertEquals(r.code, 1, r.stderr);
    assertEquals(stderrLines(r), [
      `unibus identity: ${file} already exists; refusing to overwrite an identity`,
    ]);
    assertEquals(r.stdout, "");
    assertEquals(await Deno.readFile(file), before);
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["ada.id.json"]);
  });
});

Deno.test("identity show of a corrupt, too-open or missing file is exit 1 with one line", async () => {
  await withTempDir(async (dir) => {
    const corrupt = `${dir}/corrupt.json`;
    const text = encodeIdentityFile(generateIdentity());
    const seed = JSON.parse(text).sign_seed as string;
    // Truncated mid-seed: JSON.parse would quote the text in its own message.
    await Deno.writeTextFile(corrupt, text.slice(0, text.indexOf(seed) + 20), { mode: 0o600 });
    const before = await Deno.readFile(corrupt);

    const open = `${dir}/open.json`;
    await Deno.writeTextFile(open, text, { mode: 0o600 });
    await Deno.chmod(open, 0o644);

    const [c, o, m] = await Promise.all([
      unibus(["identity", "show", corrupt]),
      unibus(["identity", "show", open]),
      unibus(["identity", "show", `${dir}/missing.json`]),
    ]);
    assertEquals(c.code, 1, c.stderr);
    assertEquals(stderrLines(c).length, 1, c.stderr);
    assertMatch(c.stderr, /^unibus identity: identity file .+ is corrupt \(not valid JSON\)/);
    assert(!c.stderr.includes(seed.slice(0, 16)), "the error does not quote the seed");
    assertEquals(await Deno.readFile(corrupt), before, "the corrupt file is not rewritten");

    assertEquals(o.code, 1, o.stderr);
    assertEquals(stderrLines(o).length, 1, o.stderr);
    assert(o.stderr.includes(`chmod 600 ${open}`), o.stderr);
    assertEquals((await Deno.stat(open)).mode! & 0o777, 0o644, "mode left for the operator");

    assertEquals(m.code, 1, m.stderr);
    assertEquals(stderrLines(m), [`unibus identity: no identity file at ${dir}/missing.json`]);
    for (const r of [c, o, m]) assertEquals(r.stdout, "");
  });
});

Deno.test("identity usage mistakes are exit 2 with one line; --help works", async () => {
  await withTempDir(async (dir) => {
    const [noOut, badHandle, unknown, none, showNone, help, newHelp, showHelp] = await Promise.all([
      unibus(["identity", "new"]),
      unibus(["identity", "new", "--out", `${dir}/x.json`, "--handle", "a\nb"]),
      unibus(["identity", "rotate"]),
      unibus(["identity"]),
      unibus(["identity", "show"]),
      unibus(["identity", "--help"]),
      unibus(["identity", "new", "--help"]),
      unibus(["identity", "show", "--help"]),
    ]);
    const usage: Array<[Run, string]> = [
      [noOut, "--out FILE is required"],
      [badHandle, "--handle must be 1-64 printable characters"],
      [unknown, 'unknown subcommand "rotate"'],
      [none, "missing subcommand"],
      [showNone, "identity show needs a FILE"],
    ];
    for (const [r, msg] of usage) {
      assertEquals(r.code, 2, r.stderr);
      assertEquals(stderrLines(r).length, 1, r.stderr);
      assert(r.stderr.includes(msg), r.stderr);
    }
    assertEquals([...Deno.readDirSync(dir)].length, 0, "nothing written");
    assertMatch(help.stdout, /^usage: unibus identity <subcommand>/);
    assertMatch(newHelp.stdout, /^usage: unibus identity new --out FILE/);
    assertMatch(showHelp.stdout, /^usage: unibus identity show FILE/);
    for (const r of [help, newHelp, showHelp]) assertEquals(r.code, 0);
  });
});

Deno.test("an identity made by `identity new` registers with `user add` using its printed keys", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/ada.id.json`;
    const db = `${dir}/unibus.db`;
    assertEquals((await unibus(["identity", "new", "--out", file, "--handle", "ada"])).code, 0);
    const shown = (await unibus(["identity", "show", file, "--json"])).lines[0] as Record<
      string,
      string
    >;
    const add = await unibus([
      "user",
      "add",
      "--handle",
      shown.handle,
      "--sign-pub",
      shown.signPub,
      "--kex-pub",
      shown.kexPub,
      "--kex-sig",
      shown.kexSig,
      "--db",
      db,
    ]);
    assertEquals(add.code, 0, add.stderr);
    const list = await unibus(["user", "list", "--json", "--db", db]);
    const [user] = list.lines[0] as unknown as Array<Record<string, unknown>>;
    const id = await loadIdentity(file);
    assertEquals(user.signPub, id.signPubHex);
    assertEquals(user.kexPub, toHex(id.kexPub));
    assertEquals(user.kexSig, id.kexSigHex);
  });
});
