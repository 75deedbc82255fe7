/**
 * `unibus user add|list|revoke`: administration of the allowlist, offline in
 * the SQLite file, or live in a running node's KV buckets (`--store kv`, as
 * the internal service identity, so users join a running cluster without a restart).
 * Everything is validated before the store is opened, so a usage mistake
 * (exit 2) writes nothing; an existing user is never overwritten and a
 * revoked one is never deleted.
 *
 * @module
 */

import { isValidPublicKey } from "../lib/crypto/ed25519.ts";
import { handleViolation } from "../lib/grammar.ts";
import { fromHex, normalizeHexInput, toHex } from "../lib/identity/hex.ts";
import {
  isValidKexPublicKey,
  nkeyPublicFromSignPub,
  signPubFromNkey,
  verifyKexBinding,
} from "../lib/identity/identity.ts";
import type { KvStore } from "../lib/store/mod.ts";
import {
  MAX_CONNECTIONS_LIMIT,
  type Role,
  type Store,
  StoreOutcomeUnknownError,
  type User,
  UserExistsError,
} from "../lib/store/store.ts";
import { type OptionTable, parseCommandArgs, renderHelp, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import { replicationLine } from "./kv_target.ts";
import {
  auditCliChange,
  describeTarget,
  openTargetStore,
  STORE_OPTIONS,
  type StoreTarget as Target,
  storeTargetOf,
} from "./store_target.ts";

const AUDIT_OPTION: OptionTable = {
  "audit-log": {
    type: "string",
    valueName: "FILE",
    description: "append the change to this audit log",
    defaultText: "audit.log beside --db, or beside --internal-id-file with --store kv",
  },
};

const ADD_OPTIONS: OptionTable = {
  handle: {
    type: "string",
    valueName: "H",
    description: "display name, 1-64 printable characters (required)",
  },
  "sign-pub": {
    type: "string",
    valueName: "HEX",
    description: "Ed25519 public key: 64 hex characters or a U… nkey (required)",
  },
  "kex-pub": {
    type: "string",
    valueName: "HEX",
    description: "X25519 public key, 64 hex characters (needs --kex-sig)",
  },
  "kex-sig": {
    type: "string",
    valueName: "HEX",
    description: "binding signature of --kex-pub by --sign-pub ('unibus identity show')",
  },
  role: { type: "string", valueName: "admin|member", description: "role", defaultText: "member" },
  ...STORE_OPTIONS,
  ...AUDIT_OPTION,
};

const LIST_OPTIONS: OptionTable = {
  json: { type: "boolean", description: "print a JSON array instead of a table" },
  ...STORE_OPTIONS,
};

const REVOKE_OPTIONS: OptionTable = { ...STORE_OPTIONS, ...AUDIT_OPTION };

const SET_LIMITS_OPTIONS: OptionTable = {
  "max-connections": {
    type: "string",
    valueName: "N|default",
    description: `connections the user may hold at once, 1 to ${MAX_CONNECTIONS_LIMIT}, ` +
      "or 'default' for the node's --max-connections-per-user",
  },
  ...STORE_OPTIONS,
  ...AUDIT_OPTION,
};

/** Help of `unibus user add`. */
export const USER_ADD_HELP: string = renderHelp(
  "unibus user add --handle H --sign-pub HEX [--kex-pub HEX --kex-sig HEX] [--role admin|member]\n" +
    "                [--db PATH | --store kv --internal-id-file PATH [--nats-url URL] [--ca PEM]]",
  "Registers a user in the allowlist. A key that is already registered is left\n" +
    "unchanged (exit 1); revoke it and use a new key instead.",
  ADD_OPTIONS,
);

/** Help of `unibus user list`. */
export const USER_LIST_HELP: string = renderHelp(
  "unibus user list [--json] [--db PATH | --store kv --internal-id-file PATH ...]",
  "Lists every user, revoked ones included.",
  LIST_OPTIONS,
);

/** Help of `unibus user revoke`. */
export const USER_REVOKE_HELP: string = renderHelp(
  "unibus user revoke KEY [--db PATH | --store kv --internal-id-file PATH ...]",
  "Marks the user with Ed25519 public key KEY (hex or nkey) revoked. The row is\n" +
    "kept for the audit trail; a running serve must also cut live connections.",
  REVOKE_OPTIONS,
);

/** Help of `unibus user set-limits`. */
export const USER_SET_LIMITS_HELP: string = renderHelp(
  "unibus user set-limits KEY --max-connections N|default [--db PATH | --store kv ...]",
  "Sets the user's own limit on connections held at once, over the node's\n" +
    "--max-connections-per-user (a runaway agent gets less, a gateway more). Logins\n" +
    "past it are refused with 'authorization violation'; connections already held stay.",
  SET_LIMITS_OPTIONS,
);

/** Help of `unibus user`. */
export const USER_HELP: string = `usage: unibus user <subcommand> [options]

Administers the allowlist: offline in the SQLite file, or live in a running
node's KV buckets with --store kv (as its internal service identity).

subcommands:
  add         register a user
  list        list users
  revoke      revoke a user (never deletes)
  set-limits  the user's own connection limit

Run 'unibus user <subcommand> --help' for its options.`;

type Values = Record<string, string | boolean | undefined>;

function str(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

/** An Ed25519 public key typed by an operator: hex in either case, or a U… nkey. */
function parseSignPub(input: string, what: string): string {
  if (input.startsWith("U")) {
    try {
      return toHex(signPubFromNkey(input));
    } catch (e) {
      throw new UsageError(`${what}: ${(e as Error).message}`);
    }
  }
  const hex = normalizeHexInput(input, 32);
  if (hex === null) {
    throw new UsageError(`${what} must be 64 hex characters (an Ed25519 public key) or a U… nkey`);
  }
  return hex;
}

async function withStore<T>(
  t: Target,
  fn: (store: Store, kv: KvStore | null) => Promise<T>,
  opts: { mayCreate?: boolean } = {},
): Promise<T> {
  const store = await openTargetStore(t, opts);
  try {
    return await fn(store, store.kind === "kv" ? store : null);
  } finally {
    await store.close();
  }
}

interface AddRequest {
  handle: string;
  signPub: string;
  kexPub: string | null;
  kexSig: string | null;
  role: Role;
  target: Target;
}

/** Validates every `user add` flag; throws UsageError before anything is opened. */
function parseAdd(values: Values): AddRequest {
  const target = storeTargetOf(values);
  const handle = str(values, "handle");
  if (handle === undefined) throw new UsageError("--handle is required");
  const bad = handleViolation(handle);
  if (bad) {
    throw new UsageError(`--handle must be 1-64 printable characters: it ${bad.message}`);
  }
  const signInput = str(values, "sign-pub");
  if (signInput === undefined) throw new UsageError("--sign-pub is required");
  const signPub = parseSignPub(signInput, "--sign-pub");
  if (!isValidPublicKey(fromHex(signPub))) {
    throw new UsageError(
      `--sign-pub ${signPub} is not a valid Ed25519 public key (small-order or malformed)`,
    );
  }
  const role = str(values, "role") ?? "member";
  if (role !== "admin" && role !== "member") {
    throw new UsageError(`--role must be admin or member, not "${role}"`);
  }
  const kexInput = str(values, "kex-pub");
  const sigInput = str(values, "kex-sig");
  let kexPub: string | null = null;
  let kexSig: string | null = null;
  if (kexInput !== undefined || sigInput !== undefined) {
    if (kexInput === undefined) throw new UsageError("--kex-sig needs --kex-pub");
    if (sigInput === undefined) {
      throw new UsageError("--kex-pub needs --kex-sig (shown by 'unibus identity show')");
    }
    kexPub = normalizeHexInput(kexInput, 32);
    if (kexPub === null) throw new UsageError("--kex-pub must be 64 hex characters");
    if (!isValidKexPublicKey(fromHex(kexPub))) {
      throw new UsageError(
        `--kex-pub ${kexPub} is not a valid X25519 public key (low-order or non-canonical)`,
      );
    }
    kexSig = normalizeHexInput(sigInput, 64);
    if (kexSig === null) throw new UsageError("--kex-sig must be 128 hex characters");
    if (!verifyKexBinding(signPub, kexPub, kexSig)) {
      throw new UsageError(
        "--kex-sig does not verify: it is not --sign-pub's binding of --kex-pub",
      );
    }
  }
  return { handle, signPub, kexPub, kexSig, role, target };
}

/** Tries of `user add` whose write may have landed (outcome unknown) before it gives up. */
const ADD_TRIES = 4;

/**
 * Adds the user. A write whose outcome is unknown (the store never
 * acknowledged it) is looked for, then tried again: the user found stored
 * exactly as asked is success, including as the retry's "already exists".
 */
async function addUserOnce(
  store: Store,
  req: AddRequest,
  stored: () => Promise<boolean>,
): Promise<void> {
  let unknown = false;
  for (let attempt = 1;; attempt++) {
    try {
      await store.addUser({
        signPub: req.signPub,
        kexPub: req.kexPub,
        kexSig: req.kexSig,
        handle: req.handle,
        role: req.role,
      });
      return;
    } catch (e) {
      if (e instanceof UserExistsError && unknown && await stored()) return;
      if (!(e instanceof StoreOutcomeUnknownError)) throw e;
      unknown = true;
      if (attempt >= ADD_TRIES) {
        throw new Error(
          `the store did not acknowledge adding ${req.signPub} (outcome unknown: it may have ` +
            `been added); check with \`user list\` and run the same command again`,
        );
      }
      await new Promise((r) => setTimeout(r, 1000));
      if (await stored()) return;
    }
  }
}

/** Appends a user change to the audit log (see {@linkcode auditCliChange}). */
function auditUserChange(
  values: Record<string, string | boolean | undefined>,
  target: Target,
  event: "user.add" | "user.revoke" | "user.limits",
  fields: Record<string, unknown>,
): Promise<void> {
  const explicit = typeof values["audit-log"] === "string" ? values["audit-log"] : undefined;
  const msg = {
    "user.add": "user added",
    "user.revoke": "user revoked",
    "user.limits": "user limits set",
  }[event];
  return auditCliChange(explicit, target, event, msg, fields);
}

async function runAdd(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, ADD_OPTIONS, { maxPositionals: 0 });
  if (values.help) {
    console.log(USER_ADD_HELP);
    return 0;
  }
  const req = parseAdd(values);
  return await withStore(req.target, async (store, kv) => {
    // The stored user is exactly the one asked for (and active).
    const stored = async () => {
      const u = await store.getUser(req.signPub).catch(() => null);
      return u !== null && u.status === "active" && u.handle === req.handle &&
        u.role === req.role && u.kexPub === req.kexPub && u.kexSig === req.kexSig;
    };
    try {
      await addUserOnce(store, req, stored);
    } catch (e) {
      if (!(e instanceof UserExistsError)) throw e;
      const existing = await store.getUser(req.signPub);
      if (existing?.status === "revoked") {
        throw new Error(
          `user ${req.signPub} already registered and revoked (unchanged); ` +
            "a revoked key cannot be re-added, use a new identity",
        );
      }
      throw new Error(
        `user ${req.signPub} already registered (unchanged); revoke it first to replace`,
      );
    }
    console.log(
      `added user ${req.signPub} (handle ${JSON.stringify(req.handle)}, role ${req.role}` +
        `${req.kexPub ? ", with kex key" : ", no kex key"}) to ${describeTarget(req.target)}`,
    );
    await auditUserChange(values, req.target, "user.add", {
      signPub: req.signPub,
      handle: req.handle,
      role: req.role,
    });
    if (kv) console.log(await replicationLine(kv));
    return 0;
  }, { mayCreate: true });
}

/** A user as `user list --json` prints it. */
export interface ListedUser {
  /** Display name. */
  handle: string;
  /** "admin" or "member". */
  role: Role;
  /** "active" or "revoked". */
  status: User["status"];
  /** Ed25519 public key, 64 lowercase hex. */
  signPub: string;
  /** The same key as a NATS user nkey. */
  nkey: string;
  /** X25519 public key, 64 lowercase hex, or null if none was registered. */
  kexPub: string | null;
  /** Binding signature of kexPub, 128 lowercase hex, or null. */
  kexSig: string | null;
  /** Milliseconds since the Unix epoch. */
  createdAt: number;
  /** The user's own connection limit, or null: the node's `--max-connections-per-user`. */
  maxConnections: number | null;
}

function listed(u: User): ListedUser {
  return {
    handle: u.handle,
    role: u.role,
    status: u.status,
    signPub: u.signPub,
    nkey: nkeyPublicFromSignPub(fromHex(u.signPub)),
    kexPub: u.kexPub,
    kexSig: u.kexSig,
    createdAt: u.createdAt,
    maxConnections: u.maxConnections ?? null,
  };
}

function table(users: User[]): string {
  const rows = [
    ["HANDLE", "ROLE", "STATUS", "SIGN_PUB", "MAX_CONN", "CREATED"],
    ...users.map((u) => [
      u.handle,
      u.role,
      u.status,
      u.signPub,
      u.maxConnections === undefined ? "default" : String(u.maxConnections),
      new Date(u.createdAt).toISOString().replace(/\.\d{3}Z$/, "Z"),
    ]),
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i])).join("  "))
    .join("\n");
}

async function runList(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, LIST_OPTIONS, { maxPositionals: 0 });
  if (values.help) {
    console.log(USER_LIST_HELP);
    return 0;
  }
  const target = storeTargetOf(values);
  const users = await withStore(target, (store) => store.listUsers());
  if (values.json) {
    console.log(JSON.stringify(users.map(listed))); // one line, for scripts
  } else if (users.length === 0) {
    console.log(`no users in ${describeTarget(target)}`);
  } else {
    console.log(table(users));
  }
  return 0;
}

async function runRevoke(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, REVOKE_OPTIONS, { maxPositionals: 1 });
  if (values.help) {
    console.log(USER_REVOKE_HELP);
    return 0;
  }
  const target = storeTargetOf(values);
  const key = positionals[0];
  if (key === undefined) throw new UsageError("user revoke needs the user's KEY (sign_pub hex)");
  // Unlike add, a key that fails the curve checks may still be revoked: if one
  // ever got in, taking it out must not be refused.
  const signPub = parseSignPub(key, "KEY");
  return await withStore(target, async (store, kv) => {
    const user = await store.getUser(signPub);
    if (user === null) throw new Error(`no user ${signPub} in ${describeTarget(target)}`);
    if (user.status === "revoked") {
      console.log(`user ${signPub} is already revoked (unchanged)`);
      return 0;
    }
    await store.revokeUser(signPub);
    console.log(`revoked user ${signPub}`);
    await auditUserChange(values, target, "user.revoke", { signPub, handle: user.handle });
    if (kv) console.log(await replicationLine(kv));
    return 0;
  });
}

async function runSetLimits(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, SET_LIMITS_OPTIONS, {
    maxPositionals: 1,
  });
  if (values.help) {
    console.log(USER_SET_LIMITS_HELP);
    return 0;
  }
  const target = storeTargetOf(values);
  const key = positionals[0];
  if (key === undefined) throw new UsageError("user set-limits needs the user's KEY");
  const signPub = parseSignPub(key, "KEY");
  const text = str(values, "max-connections");
  if (text === undefined) throw new UsageError("--max-connections N|default is required");
  let max: number | null = null;
  if (text !== "default") {
    max = /^\d{1,6}$/.test(text) ? Number(text) : NaN;
    if (!(max >= 1 && max <= MAX_CONNECTIONS_LIMIT)) {
      throw new UsageError(
        `--max-connections: "${text}" must be 1 to ${MAX_CONNECTIONS_LIMIT}, or default`,
      );
    }
  }
  return await withStore(target, async (store, kv) => {
    const user = await store.getUser(signPub);
    if (user === null) throw new Error(`no user ${signPub} in ${describeTarget(target)}`);
    await store.setUserMaxConnections(signPub, max);
    console.log(
      `user ${signPub}: at most ${max ?? "the node's default number of"} connections at once`,
    );
    await auditUserChange(values, target, "user.limits", {
      signPub,
      handle: user.handle,
      maxConnections: max,
      before: user.maxConnections ?? null,
    });
    if (kv) console.log(await replicationLine(kv));
    return 0;
  });
}

/**
 * `unibus user add|list|revoke|set-limits`.
 *
 * @example
 * ```ts
 * import { userCommand } from "./user.ts";
 * await userCommand.run(["list", "--db", "./local_files/unibus.db"]);
 * ```
 */
export const userCommand: Command = {
  name: "user",
  async run(argv) {
    const [sub, ...rest] = argv;
    switch (sub) {
      case "add":
        return await runAdd(rest);
      case "list":
        return await runList(rest);
      case "revoke":
        return await runRevoke(rest);
      case "set-limits":
        return await runSetLimits(rest);
      case "--help":
      case "-h":
      case "help":
        console.log(USER_HELP);
        return 0;
      case undefined:
        throw new UsageError(
          "missing subcommand: add, list, revoke or set-limits (try 'unibus user --help')",
        );
      default:
        throw new UsageError(`unknown subcommand "${sub}" (try 'unibus user --help')`);
    }
  },
};
