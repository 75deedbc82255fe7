import { createUser, fromPublic, fromSeed, Prefix } from "@nats-io/nkeys";
import { Codec } from "@nats-io/nkeys/lib/codec.js";
import { ED25519_TORSION_SUBGROUP, x25519 } from "@noble/curves/ed25519.js";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
} from "./helpers/assert.ts";
import { verifySignature } from "../lib/crypto/ed25519.ts";
import { fromHex, isHex, normalizeHexInput, toHex } from "../lib/identity/hex.ts";
import {
  decodeIdentityFile,
  encodeIdentityFile,
  generateIdentity,
  Identity,
  IdentityCorruptError,
  IdentityError,
  IdentityExistsError,
  IdentityNotFoundError,
  IdentityPermissionError,
  isValidKexPublicKey,
  kexBindingMessage,
  kexBindingSignature,
  loadIdentity,
  loadOrCreateIdentity,
  nkeyPublicFromSignPub,
  saveIdentity,
  signPubFromNkey,
  verifyKexBinding,
} from "../lib/identity/identity.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-identity-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function mode(path: string): number {
  return Deno.statSync(path).mode! & 0o777;
}

/** Writes a file (mode 0600) containing `text`, bypassing saveIdentity. */
async function writeRaw(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(path, text, { mode: 0o600 });
  await Deno.chmod(path, 0o600);
}

type FileFields = Record<string, unknown>;

function fields(id: Identity): FileFields {
  return JSON.parse(encodeIdentityFile(id));
}

/** Asserts that loading `path` fails as corrupt and leaves its bytes untouched. */
async function assertCorruptAndUntouched(path: string, includes: string): Promise<void> {
  const before = await Deno.readFile(path);
  const err = await assertRejects(() => loadIdentity(path), IdentityCorruptError, includes);
  assertEquals(await Deno.readFile(path), before, "the corrupt file is not rewritten");
  assert(!err.message.includes("\n"), "one-line message");
  // loadOrCreate must not "repair" it either.
  await assertRejects(() => loadOrCreateIdentity(path), IdentityCorruptError);
  assertEquals(await Deno.readFile(path), before, "loadOrCreate leaves it untouched too");
}

Deno.test("hex helpers accept only lowercase even-length hex and round-trip bytes", () => {
  const bytes = Uint8Array.of(0, 1, 171, 255);
  assertEquals(toHex(bytes), "0001abff");
  assertEquals(fromHex("0001abff"), bytes);
  assert(isHex("", 0) && isHex("ab") && !isHex("AB") && !isHex("abc") && !isHex("zz"));
  assert(!isHex("abcd", 1), "length is checked when given");
  assertThrows(() => fromHex("0001ABFF"), RangeError);
  assertThrows(() => fromHex("abcd", 3), RangeError);
  for (const bad of ["abc", "0g", "g0", "a ", "\u00e90", "0\u0130", "-1", "0x"]) {
    assertThrows(() => fromHex(bad), RangeError);
  }
  const every = Uint8Array.from({ length: 256 }, (_, i) => i);
  assertEquals(fromHex(toHex(every)), every);
  assertEquals(normalizeHexInput("AbCd", 2), "abcd");
  assertEquals(normalizeHexInput("abc", 2), null);
});

Deno.test("a saved identity loads back with the same keys and the file is 0600", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/nested/dir/ada.id.json`;
    const id = generateIdentity("ada");
    await saveIdentity(path, id);
    assertEquals(mode(path), 0o600);
    assertEquals(mode(`${dir}/nested/dir`), 0o700, "created parents are private");
    const loaded = await loadIdentity(path);
    assertEquals(loaded.signSeed, id.signSeed);
    assertEquals(loaded.signPub, id.signPub);
    assertEquals(loaded.kexPriv, id.kexPriv);
    assertEquals(loaded.kexPub, id.kexPub);
    assertEquals(loaded.kexSig, id.kexSig);
    assertEquals(loaded.handle, "ada");
    // The loaded signer signs for the loaded public key.
    const msg = new TextEncoder().encode("hello");
    assert(verifySignature(id.signPub, msg, loaded.signer.sign(msg)));
    // Nothing but the final file is left in the directory (no temp files).
    const names = [...Deno.readDirSync(`${dir}/nested/dir`)].map((e) => e.name);
    assertEquals(names, ["ada.id.json"]);
  });
});

Deno.test("the file has the documented JSON fields and X25519 keys agree with noble", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/x.json`;
    const id = generateIdentity();
    await saveIdentity(path, id);
    const f = JSON.parse(await Deno.readTextFile(path));
    assertEquals(Object.keys(f).sort(), [
      "kex_priv",
      "kex_pub",
      "kex_sig",
      "sign_pub",
      "sign_seed",
      "version",
    ]);
    assertEquals(f.version, 1);
    assertEquals(f.sign_pub, id.signPubHex);
    assertEquals(f.kex_pub, toHex(x25519.getPublicKey(fromHex(f.kex_priv))));
    assertEquals(f.kex_sig.length, 128);
  });
});

Deno.test("saveIdentity refuses to overwrite an existing file unless asked to", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/x.json`;
    const first = generateIdentity();
    await saveIdentity(path, first);
    const before = await Deno.readFile(path);
    const err = await assertRejects(
      () => saveIdentity(path, generateIdentity()),
      IdentityExistsError,
      "already exists; refusing to overwrite an identity",
    );
    assertEquals(err.path, path);
    assertEquals(await Deno.readFile(path), before);
    assertEquals([...Deno.readDirSync(dir)].length, 1, "no temp file left behind");

    const second = generateIdentity();
    await saveIdentity(path, second, { overwrite: true });
    assertEquals((await loadIdentity(path)).signPubHex, second.signPubHex);
    assertEquals(mode(path), 0o600);
  });
});

Deno.test("saveIdentity does not clobber a file that is not an identity either", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/notes.txt`;
    await Deno.writeTextFile(path, "precious");
    await assertRejects(() => saveIdentity(path, generateIdentity()), IdentityExistsError);
    assertEquals(await Deno.readTextFile(path), "precious");
  });
});

Deno.test("loadIdentity refuses files open to group or others and names the chmod fix", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/x.json`;
    await saveIdentity(path, generateIdentity());
    for (const m of [0o640, 0o604, 0o644, 0o660, 0o601]) {
      await Deno.chmod(path, m);
      const err = await assertRejects(
        () => loadIdentity(path),
        IdentityPermissionError,
        `chmod 600 ${path}`,
      );
      assertEquals(err.mode & 0o777, m);
      assertMatch(err.message, new RegExp(`mode 0${m.toString(8)}`));
      // loadOrCreate reports the same problem instead of replacing the file.
      await assertRejects(() => loadOrCreateIdentity(path), IdentityPermissionError);
      assertEquals(mode(path), m, "the mode is not changed behind the operator's back");
    }
    await Deno.chmod(path, 0o400);
    await loadIdentity(path); // owner-only read is fine
  });
});

Deno.test("a missing identity file is IdentityNotFoundError, not a new identity", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/missing.json`;
    const err = await assertRejects(() => loadIdentity(path), IdentityNotFoundError, path);
    assert(err instanceof IdentityError);
    await assertRejects(() => Deno.stat(path), Deno.errors.NotFound);
  });
});

Deno.test("a directory at the identity path is an error, not a new identity", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/d`, { mode: 0o700 });
    await assertRejects(() => loadIdentity(`${dir}/d`), IdentityError, "not a regular file");
    await assertRejects(() => loadOrCreateIdentity(`${dir}/d`), IdentityError);
  });
});

Deno.test("corrupt identity files are refused with a reason and never rewritten", async () => {
  await withTempDir(async (dir) => {
    const good = generateIdentity();
    const other = generateIdentity();
    const base = fields(good);
    const cases: Array<[string, string, string]> = [
      ["empty", "", "not valid JSON"],
      ["truncated", encodeIdentityFile(good).slice(0, 60), "not valid JSON"],
      ["array", "[]", "not a JSON object"],
      ["no version", JSON.stringify({ ...base, version: undefined }), "version"],
      ["future version", JSON.stringify({ ...base, version: 2 }), "version 2 is newer"],
      ["short seed", JSON.stringify({ ...base, sign_seed: "ab" }), "sign_seed is not 64"],
      [
        "uppercase pub",
        JSON.stringify({ ...base, sign_pub: String(base.sign_pub).toUpperCase() }),
        "sign_pub is not 64 lowercase hex",
      ],
      ["missing kex_sig", JSON.stringify({ ...base, kex_sig: undefined }), "kex_sig is not 128"],
      [
        "sign_pub of another key",
        JSON.stringify({ ...base, sign_pub: other.signPubHex }),
        "sign_pub does not match sign_seed",
      ],
      [
        "kex_pub of another key",
        JSON.stringify({ ...base, kex_pub: other.kexPubHex }),
        "kex_pub does not match kex_priv",
      ],
      [
        "binding signed by another key",
        JSON.stringify({ ...base, kex_sig: other.kexSigHex }),
        "kex_sig does not verify",
      ],
      [
        "small-order sign_pub",
        JSON.stringify({ ...base, sign_pub: "01" + "00".repeat(31) }),
        "small-order",
      ],
      [
        "all-zero sign_pub",
        JSON.stringify({ ...base, sign_pub: "00".repeat(32) }),
        "not a valid Ed25519 public key",
      ],
      ["bad handle", JSON.stringify({ ...base, handle: "a\nb" }), "handle"],
    ];
    for (const [name, text, reason] of cases) {
      const path = `${dir}/${name.replaceAll(" ", "_")}.json`;
      await writeRaw(path, text);
      await assertCorruptAndUntouched(path, reason);
    }
  });
});

Deno.test("a corrupt-file error never quotes the file's secrets", async () => {
  await withTempDir(async (dir) => {
    const id = generateIdentity();
    const seedHex = toHex(id.signSeed);
    const path = `${dir}/x.json`;
    // Broken JSON right after the seed: JSON.parse's own message would quote it.
    await writeRaw(path, `{"sign_seed":"${seedHex}",,}`);
    const err = await assertRejects(() => loadIdentity(path), IdentityCorruptError);
    assert(!err.message.includes(seedHex.slice(0, 16)), err.message);
    assert(!String(err.stack).includes(seedHex.slice(0, 16)));
  });
});

Deno.test("binary garbage in an identity file is corrupt, not a crash", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/x.json`;
    await Deno.writeFile(path, Uint8Array.of(0xff, 0xfe, 0x00, 0x81), { mode: 0o600 });
    await assertCorruptAndUntouched(path, "not UTF-8");
  });
});

Deno.test("loadOrCreateIdentity creates once, 0600, then loads the same key", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/data/internal.id.json`;
    const a = await loadOrCreateIdentity(path);
    assertEquals(mode(path), 0o600);
    const bytes = await Deno.readFile(path);
    const b = await loadOrCreateIdentity(path);
    assertEquals(b.signPubHex, a.signPubHex);
    assertEquals(b.kexPubHex, a.kexPubHex);
    assertEquals(await Deno.readFile(path), bytes, "the second call does not rewrite it");
  });
});

Deno.test("concurrent loadOrCreateIdentity calls agree on one identity", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/internal.id.json`;
    const ids = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateIdentity(path)));
    const onDisk = await loadIdentity(path);
    for (const id of ids) assertEquals(id.signPubHex, onDisk.signPubHex);
  });
});

Deno.test("the kex binding verifies and fails for a swapped kex key or another signer", () => {
  const id = generateIdentity();
  const other = generateIdentity();
  const sig = toHex(kexBindingSignature(id));
  assertEquals(sig, id.kexSigHex, "Ed25519 is deterministic");
  assert(verifyKexBinding(id.signPubHex, id.kexPubHex, sig));
  // A server that swaps in its own X25519 key cannot reuse the signature.
  assert(!verifyKexBinding(id.signPubHex, other.kexPubHex, sig));
  // Nor claim the binding for another user.
  assert(!verifyKexBinding(other.signPubHex, id.kexPubHex, sig));
  assert(!verifyKexBinding(id.signPubHex, id.kexPubHex, other.kexSigHex));
  // Malformed input is false, not an exception.
  assert(!verifyKexBinding(id.signPubHex.toUpperCase(), id.kexPubHex, sig));
  assert(!verifyKexBinding(id.signPubHex, id.kexPubHex, sig.slice(2)));
  assert(!verifyKexBinding("", "", ""));
  // The message is exactly the documented ASCII string.
  assertEquals(
    new TextDecoder().decode(kexBindingMessage(id.signPubHex, id.kexPubHex)),
    `unibus/kex-binding/v1\n${id.signPubHex}\n${id.kexPubHex}`,
  );
  assert(
    verifySignature(id.signPub, kexBindingMessage(id.signPubHex, id.kexPubHex), id.kexSig),
    "a plain Ed25519 verifier accepts it (no unibus-specific signing)",
  );
});

Deno.test("a binding to a low-order X25519 key is refused even when correctly signed", () => {
  const id = generateIdentity();
  const zero = "00".repeat(32);
  const one = "01" + "00".repeat(31);
  for (const kex of [zero, one]) {
    assert(!isValidKexPublicKey(fromHex(kex)));
    const sig = toHex(id.signer.sign(kexBindingMessage(id.signPubHex, kex)));
    assert(!verifyKexBinding(id.signPubHex, kex, sig), kex);
  }
  // Non-canonical: top bit set.
  const high = id.kexPub.slice();
  high[31] |= 0x80;
  assert(!isValidKexPublicKey(high));
  assert(isValidKexPublicKey(id.kexPub));
});

Deno.test("the small-order check refuses exactly the keys noble's X25519 ladder refuses", () => {
  const p = (1n << 255n) - 19n;
  const le = (u: bigint) => {
    const b = new Uint8Array(32);
    for (let i = 0; i < 32; i++) b[i] = Number((u >> BigInt(8 * i)) & 0xffn);
    return b;
  };
  const ladderRefuses = (pub: Uint8Array) => {
    try {
      x25519.getSharedSecret(new Uint8Array(32).fill(0x42), pub);
      return false;
    } catch {
      return true;
    }
  };
  const pow = (b: bigint, e: bigint) => {
    let r = 1n;
    for (b %= p; e > 0n; e >>= 1n, b = (b * b) % p) if (e & 1n) r = (r * b) % p;
    return r;
  };
  // Every torsion point of Ed25519 but the identity, as its Montgomery u =
  // (1 + y) / (1 - y): the curve's small-order points, all refused.
  const torsionU = ED25519_TORSION_SUBGROUP.map((hex) => {
    const bytes = fromHex(hex);
    bytes[31] &= 0x7f;
    let y = 0n;
    for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(bytes[i]);
    return y === 1n ? null : ((1n + y) * pow(1n - y + p, p - 2n)) % p;
  }).filter((u) => u !== null);
  // u = p - 1 is the twist's point of order 4 (u = 0, 1 are on both).
  const small = new Set([...torsionU, p - 1n]);
  assertEquals(small.size, 5);
  for (const u of small) {
    assert(ladderRefuses(le(u)), `noble refuses ${u}`);
    assert(!isValidKexPublicKey(le(u)), `refused: ${u}`);
  }
  // Neighbours of each and real keys are accepted, as noble accepts them.
  for (const u of small) {
    for (const v of [u + 2n, u + 3n].filter((x) => x < p && !small.has(x))) {
      assertEquals(isValidKexPublicKey(le(v)), !ladderRefuses(le(v)), `${v}`);
    }
  }
  for (let i = 0; i < 20; i++) {
    const kex = generateIdentity().kexPub;
    assert(isValidKexPublicKey(kex) && !ladderRefuses(kex));
  }
  // Non-canonical aliases of small-order points (p, p + 1) are refused as non-canonical.
  assert(!isValidKexPublicKey(le(p)) && !isValidKexPublicKey(le(p + 1n)));
});

Deno.test("nkey spelling round-trips and matches @nats-io/nkeys for the same seed", () => {
  for (let i = 0; i < 5; i++) {
    const id = generateIdentity();
    const nkey = nkeyPublicFromSignPub(id.signPub);
    assertMatch(nkey, /^U[A-Z2-7]{55}$/);
    assertEquals(id.nkey, nkey);
    assertEquals(signPubFromNkey(nkey), id.signPub);
    // nats.js, given our seed, derives the same user and verifies our signatures.
    const kp = fromSeed(Codec.encodeSeed(Prefix.User, id.signSeed));
    assertEquals(kp.getPublicKey(), nkey);
    const nonce = new TextEncoder().encode(`server nonce ${i}`);
    assert(fromPublic(nkey).verify(nonce, id.signer.sign(nonce)));
    assert(verifySignature(id.signPub, nonce, kp.sign(nonce)));
  }
  // A key nkeys generated decodes to the Ed25519 key it signs with.
  const user = createUser();
  const msg = new TextEncoder().encode("x");
  assert(verifySignature(signPubFromNkey(user.getPublicKey()), msg, user.sign(msg)));
});

Deno.test("signPubFromNkey rejects other prefixes, bad checksums and junk", () => {
  const nkey = generateIdentity().nkey;
  const flipped = nkey.slice(0, 10) + (nkey[10] === "A" ? "B" : "A") + nkey.slice(11);
  const account = new TextDecoder().decode(
    Codec.encode(Prefix.Account, generateIdentity().signPub),
  );
  for (
    const bad of [flipped, account, "", "U", nkey.slice(0, -1), nkey.toLowerCase(), "S" + nkey]
  ) {
    assertThrows(() => signPubFromNkey(bad), RangeError, undefined);
  }
  assertThrows(() => nkeyPublicFromSignPub(new Uint8Array(31)), RangeError);
});

Deno.test("an identity never shows its private keys through JSON or inspection", () => {
  const id = generateIdentity("ada");
  const seedHex = toHex(id.signSeed);
  const kexHex = toHex(id.kexPriv);
  for (const text of [JSON.stringify(id), Deno.inspect(id), Deno.inspect({ nested: id })]) {
    assert(!text.includes(seedHex) && !text.includes(kexHex), text);
    assert(text.includes(id.signPubHex), text);
  }
  assertEquals(id.toPublic(), {
    handle: "ada",
    signPub: id.signPubHex,
    nkey: id.nkey,
    kexPub: id.kexPubHex,
    kexSig: id.kexSigHex,
  });
});

Deno.test("an Identity built from fixed seeds is deterministic and decodes from its own file", () => {
  const a = new Identity(new Uint8Array(32).fill(7), new Uint8Array(32).fill(9), "fixed");
  const b = new Identity(new Uint8Array(32).fill(7), new Uint8Array(32).fill(9), "fixed");
  assertEquals(encodeIdentityFile(a), encodeIdentityFile(b));
  assertEquals(decodeIdentityFile(encodeIdentityFile(a), "mem").signPubHex, a.signPubHex);
  assertThrows(() => new Identity(new Uint8Array(31), new Uint8Array(32)), RangeError);
  assertThrows(() => new Identity(new Uint8Array(32), new Uint8Array(32), ""), RangeError);
});
