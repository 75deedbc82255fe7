/**
 * A unibus identity: an Ed25519 signing key (which is also the user's NATS
 * nkey) and an X25519 key-exchange key, bound together by a signature so the
 * server that relays the X25519 key cannot swap in one of its own.
 *
 * Identity files hold private keys, so they are written 0600 atomically and a
 * file that is too open, unreadable or corrupt is an error: never silently
 * replaced by a fresh key, which could not decrypt what the old one
 * was sealed to and would quietly change who the user is.
 *
 * @example
 * ```ts
 * import { loadOrCreateIdentity } from "./identity.ts";
 * const id = await loadOrCreateIdentity("./local_files/internal.id.json");
 * console.log(id.nkey); // "U…"
 * ```
 * @module
 */

import { promises as fsp } from "node:fs";
import process from "node:process";
import { isNotFound } from "../platform/mod.ts";
import {
  FileTooLargeError,
  NotRegularFileError,
  readRegularFile,
  type RegularFile,
} from "../fs/read_regular.ts";
import { dirname, resolve } from "node:path";
import { x25519 } from "@noble/curves/ed25519.js";
import { fromPublic, Prefix } from "@nats-io/nkeys";
// Codec is the library's own base32+CRC16 encoder; the package root exports no
// way to spell a bare public key, only key pairs built from seeds.
import { Codec } from "@nats-io/nkeys/lib/codec.js";
import {
  type Ed25519KeyPair,
  generateSeed,
  isValidPublicKey,
  keyPairFromSeed,
  verifySignature,
} from "../crypto/ed25519.ts";
import { handleViolation } from "../grammar.ts";
import { fromHex, isHex, toHex } from "./hex.ts";
import { privateTempPath, writePrivateTemp } from "../fs/private_file.ts";

/** The `version` field of identity files this code writes and reads. */
export const IDENTITY_FILE_VERSION = 1;

/** Domain-separation prefix of the kex binding signature. */
export const KEX_BINDING_CONTEXT = "unibus/kex-binding/v1\n";

// Real identity files are ~400 bytes; the cap keeps a wrong path (a log, a
// disk image) from being read into memory whole.
const MAX_FILE_BYTES = 64 * 1024;

/**
 * A loaded or generated identity. Private parts never leave through
 * `JSON.stringify` or `console.log`: both show only the public keys.
 *
 * @example
 * ```ts
 * import { generateIdentity } from "./identity.ts";
 * const id = generateIdentity("ada");
 * const sig = id.signer.sign(new TextEncoder().encode("nonce"));
 * ```
 */
export class Identity {
  /** Ed25519 seed (RFC 8032 private key), 32 bytes. Secret. */
  readonly signSeed: Uint8Array;
  /** Ed25519 public key, 32 bytes; also the NATS user nkey. */
  readonly signPub: Uint8Array;
  /** X25519 private key, 32 bytes. Secret. */
  readonly kexPriv: Uint8Array;
  /** X25519 public key, 32 bytes. */
  readonly kexPub: Uint8Array;
  /** Ed25519 signature binding `kexPub` to `signPub` (see {@linkcode kexBindingMessage}). */
  readonly kexSig: Uint8Array;
  /** Signs with the Ed25519 key without exposing it. */
  readonly signer: Ed25519KeyPair;
  /** A display name chosen at creation, or null; not authenticated by anything. */
  readonly handle: string | null;

  /**
   * Derives the public halves and the binding signature from the two secrets.
   *
   * @example
   * ```ts
   * import { Identity } from "./identity.ts";
   * const id = new Identity(new Uint8Array(32).fill(1), new Uint8Array(32).fill(2));
   * ```
   */
  constructor(signSeed: Uint8Array, kexPriv: Uint8Array, handle: string | null = null) {
    if (signSeed.length !== 32) throw new RangeError("an Ed25519 seed is 32 bytes");
    if (kexPriv.length !== 32) throw new RangeError("an X25519 private key is 32 bytes");
    if (handle !== null && !isValidHandle(handle)) {
      throw new RangeError("a handle is 1-64 printable characters");
    }
    // Copies, so a caller zeroing or reusing its buffers cannot change the identity.
    this.signSeed = signSeed.slice();
    this.kexPriv = kexPriv.slice();
    this.signer = keyPairFromSeed(this.signSeed);
    this.signPub = this.signer.publicKey.slice();
    this.kexPub = x25519.getPublicKey(this.kexPriv);
    this.kexSig = this.signer.sign(kexBindingMessage(toHex(this.signPub), toHex(this.kexPub)));
    this.handle = handle;
  }

  /** `signPub` as 64 lowercase hex: the user's id in the store. */
  get signPubHex(): string {
    return toHex(this.signPub);
  }

  /** `kexPub` as 64 lowercase hex. */
  get kexPubHex(): string {
    return toHex(this.kexPub);
  }

  /** `kexSig` as 128 lowercase hex. */
  get kexSigHex(): string {
    return toHex(this.kexSig);
  }

  /** The NATS user public nkey ("U…") of the signing key. */
  get nkey(): string {
    return nkeyPublicFromSignPub(this.signPub);
  }

  /**
   * The public parts only; what `JSON.stringify(identity)` produces.
   *
   * @example
   * ```ts
   * import { generateIdentity } from "./identity.ts";
   * generateIdentity().toPublic().nkey; // "U…"
   * ```
   */
  toPublic(): PublicIdentity {
    return {
      handle: this.handle,
      signPub: this.signPubHex,
      nkey: this.nkey,
      kexPub: this.kexPubHex,
      kexSig: this.kexSigHex,
    };
  }

  /** Public parts only, so a stray `JSON.stringify` cannot leak a seed. */
  toJSON(): PublicIdentity {
    return this.toPublic();
  }

  /** What `console.log` and `Deno.inspect` show: public parts only. */
  [Symbol.for("Deno.customInspect")](): string {
    return `Identity ${JSON.stringify(this.toPublic())}`;
  }

  /** What `node:util` inspect shows: public parts only. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `Identity ${JSON.stringify(this.toPublic())}`;
  }
}

/** What may be shown about an identity: public keys and the handle. */
export interface PublicIdentity {
  /** Display name recorded at creation, or null. */
  handle: string | null;
  /** Ed25519 public key, 64 lowercase hex. */
  signPub: string;
  /** The same key as a NATS user nkey. */
  nkey: string;
  /** X25519 public key, 64 lowercase hex. */
  kexPub: string;
  /** Binding signature, 128 lowercase hex. */
  kexSig: string;
}

/**
 * A fresh identity from the system CSPRNG.
 *
 * @example
 * ```ts
 * import { generateIdentity } from "./identity.ts";
 * const id = generateIdentity("ada");
 * console.log(id.signPubHex);
 * ```
 */
export function generateIdentity(handle: string | null = null): Identity {
  return new Identity(generateSeed(), generateSeed(), handle);
}

/**
 * True for a handle the store would accept (`handleViolation` in
 * `lib/grammar.ts`: 1-64 characters, valid Unicode, no NUL or other control
 * characters, not only whitespace).
 *
 * @example
 * ```ts
 * import { isValidHandle } from "./identity.ts";
 * isValidHandle("ada"); // true
 * isValidHandle("a\nb"); // false
 * ```
 */
export function isValidHandle(handle: unknown): handle is string {
  return handleViolation(handle) === null;
}

// ---- the kex binding ----

const P25519 = (1n << 255n) - 19n;

// The canonical u-coordinates (u < p) of every point of small order on
// Curve25519 and its twist: orders 1, 2, 4 (u = 1, 0, p - 1) and the curve's
// two points of order 8. With a clamped scalar (a multiple of 8) these, and
// only these, give an all-zero shared secret: libsodium's `has_small_order`
// list without its non-canonical aliases (p, p + 1), which are refused as
// non-canonical first. A table instead of a probe X25519 (noble's ladder is
// pure JS, ~0.5 ms, and every member of every change verified runs it: 28% of
// serve's CPU making 1,000 rooms of 10); tests/identity_test.ts checks the
// table against noble's ladder and noble's Ed25519 torsion subgroup.
const SMALL_ORDER_U: ReadonlySet<bigint> = new Set([
  0n,
  1n,
  P25519 - 1n,
  325606250916557431795983626356110631294008115727848805560023387167927233504n,
  39382357235489614581723060781553021112529911719440698176882885853963445705823n,
]);

/**
 * True when `pub` is a canonical X25519 public key of large order. A low-order
 * key makes every shared secret with it a known constant, so a room key sealed
 * to it would be readable by anyone holding the sealed blob (the server).
 *
 * @example
 * ```ts
 * import { isValidKexPublicKey } from "./identity.ts";
 * isValidKexPublicKey(new Uint8Array(32)); // false: u = 0 is a low-order point
 * ```
 */
export function isValidKexPublicKey(pub: Uint8Array): boolean {
  if (pub.length !== 32 || (pub[31] & 0x80) !== 0) return false;
  let u = 0n;
  for (let i = 31; i >= 0; i--) u = (u << 8n) | BigInt(pub[i]);
  // One encoding per key: values >= p alias smaller ones.
  if (u >= P25519) return false;
  return !SMALL_ORDER_U.has(u);
}

/**
 * The bytes the binding signature covers: the ASCII string
 * `"unibus/kex-binding/v1\n" + signPubHex + "\n" + kexPubHex`.
 *
 * @example
 * ```ts
 * import { kexBindingMessage } from "./identity.ts";
 * kexBindingMessage("ab".repeat(32), "cd".repeat(32)).length; // 22 + 64 + 1 + 64
 * ```
 */
export function kexBindingMessage(signPubHex: string, kexPubHex: string): Uint8Array {
  if (!isHex(signPubHex, 32) || !isHex(kexPubHex, 32)) {
    throw new RangeError("kex binding keys must be 64 lowercase hex characters each");
  }
  return new TextEncoder().encode(`${KEX_BINDING_CONTEXT}${signPubHex}\n${kexPubHex}`);
}

/**
 * The Ed25519 signature by `identity`'s signing key binding its X25519 key.
 * Ed25519 is deterministic, so this equals `identity.kexSig`.
 *
 * @example
 * ```ts
 * import { generateIdentity, kexBindingSignature, verifyKexBinding } from "./identity.ts";
 * import { toHex } from "./hex.ts";
 * const id = generateIdentity();
 * verifyKexBinding(id.signPubHex, id.kexPubHex, toHex(kexBindingSignature(id))); // true
 * ```
 */
export function kexBindingSignature(identity: Identity): Uint8Array {
  return identity.signer.sign(kexBindingMessage(identity.signPubHex, identity.kexPubHex));
}

/**
 * True when `sigHex` is `signPubHex`'s signature binding `kexPubHex`, and both
 * keys are acceptable (large-order Ed25519 key, large-order canonical X25519
 * key). Any malformed input is simply false.
 *
 * @example
 * ```ts
 * import { verifyKexBinding } from "./identity.ts";
 * if (!verifyKexBinding(user.signPub, user.kexPub, user.kexSig)) throw new Error("swapped kex key");
 * ```
 */
export function verifyKexBinding(signPubHex: string, kexPubHex: string, sigHex: string): boolean {
  if (!isHex(signPubHex, 32) || !isHex(kexPubHex, 32) || !isHex(sigHex, 64)) return false;
  if (!isValidKexPublicKey(fromHex(kexPubHex))) return false;
  return verifySignature(
    fromHex(signPubHex),
    kexBindingMessage(signPubHex, kexPubHex),
    fromHex(sigHex),
  );
}

// ---- nkeys ----

/**
 * The NATS user public nkey ("U…", base32 with CRC16) of an Ed25519 public key.
 *
 * @example
 * ```ts
 * import { generateIdentity, nkeyPublicFromSignPub } from "./identity.ts";
 * nkeyPublicFromSignPub(generateIdentity().signPub).startsWith("U"); // true
 * ```
 */
export function nkeyPublicFromSignPub(pub: Uint8Array): string {
  if (pub.length !== 32) throw new RangeError("an Ed25519 public key is 32 bytes");
  return new TextDecoder().decode(Codec.encode(Prefix.User, pub));
}

/**
 * The Ed25519 public key spelled by a NATS user nkey. Throws RangeError unless
 * `nkey` is a canonical user public nkey with a valid checksum. It does not
 * judge the key itself: callers that trust it check `isValidPublicKey`.
 *
 * @example
 * ```ts
 * import { generateIdentity, signPubFromNkey } from "./identity.ts";
 * const id = generateIdentity();
 * signPubFromNkey(id.nkey); // equals id.signPub
 * ```
 */
export function signPubFromNkey(nkey: string): Uint8Array {
  if (typeof nkey !== "string" || !nkey.startsWith("U")) {
    throw new RangeError("not a user nkey (a user public nkey starts with U)");
  }
  let raw: Uint8Array;
  try {
    fromPublic(nkey); // the library's prefix and checksum validation
    raw = Codec.decode(Prefix.User, new TextEncoder().encode(nkey));
  } catch {
    throw new RangeError("not a valid user nkey (bad encoding or checksum)");
  }
  // Re-encoding catches trailing bits and lengths the decoder tolerates, so
  // each key has exactly one accepted spelling.
  if (raw.length !== 32 || nkeyPublicFromSignPub(raw) !== nkey) {
    throw new RangeError("not a valid user nkey (wrong length or non-canonical)");
  }
  return raw;
}

// ---- errors ----

/**
 * Base of the identity-file errors; `path` is the file concerned.
 *
 * @example
 * ```ts
 * import { IdentityError } from "./identity.ts";
 * new IdentityError("/tmp/x.id", "cannot read identity file /tmp/x.id");
 * ```
 */
export class IdentityError extends Error {
  /** The identity file the error is about. */
  readonly path: string;
  constructor(path: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.path = path;
    this.name = new.target.name;
  }
}

/**
 * There is no identity file at the path.
 *
 * @example
 * ```ts
 * import { IdentityNotFoundError } from "./identity.ts";
 * throw new IdentityNotFoundError("/tmp/x.id");
 * ```
 */
export class IdentityNotFoundError extends IdentityError {
  constructor(path: string) {
    super(path, `no identity file at ${path}`);
  }
}

/**
 * The identity file is readable or writable by group or others.
 *
 * @example
 * ```ts
 * import { IdentityPermissionError } from "./identity.ts";
 * throw new IdentityPermissionError("/tmp/x.id", 0o644);
 * ```
 */
export class IdentityPermissionError extends IdentityError {
  /** The permission bits found. */
  readonly mode: number;
  constructor(path: string, mode: number) {
    super(
      path,
      `identity file ${path} has mode ${octal(mode)}, open to group or others; ` +
        `fix it with: chmod 600 ${path}`,
    );
    this.mode = mode;
  }
}

/**
 * The identity file exists but is not a valid identity. It is left untouched.
 *
 * @example
 * ```ts
 * import { IdentityCorruptError } from "./identity.ts";
 * throw new IdentityCorruptError("/tmp/x.id", "not valid JSON");
 * ```
 */
export class IdentityCorruptError extends IdentityError {
  constructor(path: string, reason: string) {
    super(path, `identity file ${path} is corrupt (${reason}); refusing to use or replace it`);
  }
}

/**
 * Saving would overwrite an existing file.
 *
 * @example
 * ```ts
 * import { IdentityExistsError } from "./identity.ts";
 * throw new IdentityExistsError("/tmp/x.id");
 * ```
 */
export class IdentityExistsError extends IdentityError {
  constructor(path: string) {
    super(path, `${path} already exists; refusing to overwrite an identity`);
  }
}

function octal(mode: number): string {
  return "0" + (mode & 0o777).toString(8).padStart(3, "0");
}

// ---- files ----

interface IdentityFile {
  version: number;
  handle?: string;
  sign_pub: string;
  sign_seed: string;
  kex_pub: string;
  kex_priv: string;
  kex_sig: string;
}

/**
 * The identity file text (JSON) of `id`. It contains private keys.
 *
 * @example
 * ```ts
 * import { encodeIdentityFile, generateIdentity } from "./identity.ts";
 * const text = encodeIdentityFile(generateIdentity());
 * ```
 */
export function encodeIdentityFile(id: Identity): string {
  const file: IdentityFile = {
    version: IDENTITY_FILE_VERSION,
    ...(id.handle !== null ? { handle: id.handle } : {}),
    sign_pub: id.signPubHex,
    sign_seed: toHex(id.signSeed),
    kex_pub: id.kexPubHex,
    kex_priv: toHex(id.kexPriv),
    kex_sig: id.kexSigHex,
  };
  return JSON.stringify(file, null, 2) + "\n";
}

/**
 * Parses and fully checks identity file text; `path` only labels errors.
 * Throws {@linkcode IdentityCorruptError}, whose message never quotes the text
 * (it holds secrets).
 *
 * @example
 * ```ts
 * import { decodeIdentityFile, encodeIdentityFile, generateIdentity } from "./identity.ts";
 * const id = decodeIdentityFile(encodeIdentityFile(generateIdentity()), "mem");
 * ```
 */
export function decodeIdentityFile(text: string, path: string): Identity {
  const corrupt = (reason: string) => new IdentityCorruptError(path, reason);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the input, which may contain a seed.
    throw corrupt("not valid JSON");
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw corrupt("not a JSON object");
  }
  const f = data as Record<string, unknown>;
  if (f.version !== IDENTITY_FILE_VERSION) {
    throw corrupt(
      typeof f.version === "number" && f.version > IDENTITY_FILE_VERSION
        ? `version ${f.version} is newer than this unibus understands`
        : "missing or unknown version",
    );
  }
  const hexField = (name: string, bytes: number): Uint8Array => {
    const v = f[name];
    if (!isHex(v, bytes)) throw corrupt(`${name} is not ${bytes * 2} lowercase hex characters`);
    return fromHex(v);
  };
  const signPub = hexField("sign_pub", 32);
  const signSeed = hexField("sign_seed", 32);
  const kexPub = hexField("kex_pub", 32);
  const kexPriv = hexField("kex_priv", 32);
  const kexSig = hexField("kex_sig", 64);
  let handle: string | null = null;
  if (f.handle !== undefined) {
    if (!isValidHandle(f.handle)) throw corrupt("handle is not 1-64 printable characters");
    handle = f.handle;
  }
  if (!isValidPublicKey(signPub)) {
    throw corrupt("sign_pub is not a valid Ed25519 public key (small-order or malformed)");
  }
  let id: Identity;
  try {
    id = new Identity(signSeed, kexPriv, handle);
  } catch {
    throw corrupt("a private key is unusable");
  }
  if (id.signPubHex !== toHex(signPub)) throw corrupt("sign_pub does not match sign_seed");
  if (id.kexPubHex !== toHex(kexPub)) throw corrupt("kex_pub does not match kex_priv");
  if (!verifyKexBinding(toHex(signPub), toHex(kexPub), toHex(kexSig))) {
    throw corrupt("kex_sig does not verify");
  }
  return id;
}

/**
 * Loads the identity at `path`, never creating or modifying it.
 * Throws {@linkcode IdentityNotFoundError}, {@linkcode IdentityPermissionError}
 * (mode has group/other bits), {@linkcode IdentityCorruptError}, or
 * {@linkcode IdentityError} for other read failures.
 *
 * @example
 * ```ts
 * import { loadIdentity } from "./identity.ts";
 * const id = await loadIdentity("./ada.id.json");
 * ```
 */
export async function loadIdentity(path: string): Promise<Identity> {
  let file: RegularFile;
  try {
    // Judged on the open handle and never blocking: a FIFO at the path is
    // refused at once instead of hanging until something writes to it.
    file = await readRegularFile(path, MAX_FILE_BYTES);
  } catch (e) {
    if (isNotFound(e)) throw new IdentityNotFoundError(path);
    if (e instanceof NotRegularFileError) {
      throw new IdentityError(path, `identity path ${path} is not a regular file (${e.kind})`);
    }
    if (e instanceof FileTooLargeError) throw new IdentityCorruptError(path, "file is too large");
    throw readError(path, e);
  }
  if (process.platform !== "win32" && (file.mode & 0o077) !== 0) {
    throw new IdentityPermissionError(path, file.mode & 0o777);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(file.bytes);
  } catch {
    throw new IdentityCorruptError(path, "not UTF-8 text");
  }
  return decodeIdentityFile(text, path);
}

function readError(path: string, e: unknown): IdentityError {
  const detail = e instanceof Error ? e.message : String(e);
  return new IdentityError(path, `cannot read identity file ${path}: ${detail}`, { cause: e });
}

/**
 * Writes `id` to `path` with mode 0600: a temp file in the same directory,
 * flushed, then moved into place so a crash never leaves a half-written
 * identity. Without `overwrite` an existing file (even one created a moment
 * earlier by another process) makes it throw {@linkcode IdentityExistsError}.
 * Missing parent directories are created 0700.
 *
 * @example
 * ```ts
 * import { generateIdentity, saveIdentity } from "./identity.ts";
 * await saveIdentity("./ada.id.json", generateIdentity("ada"));
 * ```
 */
export async function saveIdentity(
  path: string,
  id: Identity,
  opts: { overwrite?: boolean } = {},
): Promise<void> {
  const abs = resolve(path);
  const dir = dirname(abs);
  const data = new TextEncoder().encode(encodeIdentityFile(id));
  const tmp = privateTempPath(abs);
  try {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    await writePrivateTemp(tmp, data);
    if (opts.overwrite) {
      await fsp.rename(tmp, abs);
    } else {
      await placeWithoutClobber(tmp, abs, path);
    }
    await syncDir(dir);
  } catch (e) {
    if (e instanceof IdentityError) throw e;
    const detail = e instanceof Error ? e.message : String(e);
    throw new IdentityError(path, `cannot write identity file ${path}: ${detail}`, { cause: e });
  } finally {
    await fsp.rm(tmp, { force: true }).catch(() => {});
  }
}

// A hard link is an atomic "create if absent" for a complete file, which a
// rename is not (it replaces), and an exists-check before it would race.
async function placeWithoutClobber(tmp: string, abs: string, path: string): Promise<void> {
  try {
    await fsp.link(tmp, abs);
    return;
  } catch (e) {
    if ((e as { code?: unknown }).code === "EEXIST") throw new IdentityExistsError(path);
    // Filesystems without hard links: fall back to check-then-rename.
    if (await fsp.lstat(abs).then(() => true, () => false)) throw new IdentityExistsError(path);
    await fsp.rename(tmp, abs);
  }
}

async function syncDir(dir: string): Promise<void> {
  // Best effort: persists the new directory entry; not every OS allows it.
  try {
    const d = await fsp.open(dir, "r");
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch { /* unsupported */ }
}

/**
 * Loads the identity at `path`, or creates and saves a new one if, and only
 * if, no file exists there. Any other problem (mode, corruption, I/O) is the
 * load error: a damaged identity is never replaced (a new key would silently
 * change who the user is).
 *
 * @example
 * ```ts
 * import { loadOrCreateIdentity } from "./identity.ts";
 * const internal = await loadOrCreateIdentity("./local_files/internal.id.json");
 * ```
 */
export async function loadOrCreateIdentity(
  path: string,
  handle: string | null = null,
): Promise<Identity> {
  try {
    return await loadIdentity(path);
  } catch (e) {
    if (!(e instanceof IdentityNotFoundError)) throw e;
  }
  const id = generateIdentity(handle);
  try {
    await saveIdentity(path, id);
    return id;
  } catch (e) {
    // Another process created it between our load and save: use theirs.
    if (e instanceof IdentityExistsError) return await loadIdentity(path);
    throw e;
  }
}
