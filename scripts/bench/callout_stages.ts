/**
 * Where a callout answer's time goes, in one process: each stage of
 * server/auth/callout.ts's `admit` and `handle` timed alone, many times,
 * against a real SQLite store (p50 / p99 µs). Run by `--only=callout`.
 *
 * @module
 */

import { encodeAuthorizationResponse, encodeUser } from "@nats-io/jwt";
import { aclRooms, grantedPermissions } from "../../lib/auth/acl.ts";
import { encodePublicNkey, NativeNkeyPair, natsAuthMessage, Prefix } from "../../lib/auth/nkey.ts";
import { verifySignature } from "../../lib/crypto/ed25519.ts";
import { generateIdentity } from "../../lib/identity/identity.ts";
import { encodeCalloutResponse, encodeUserJwt } from "../../server/auth/jwt.ts";
import { openSqliteStore } from "../../lib/store/sqlite.ts";
import { summarize, type Summary } from "./stats.ts";
import { addBenchUsers } from "./users.ts";

/** One stage's latency. */
export interface StageResult {
  stage: string;
  us: Summary;
}

/** A stage, and what must happen (untimed) before each run of it. */
type Stage = [string, () => unknown, (() => Promise<unknown>)?];

async function time(
  n: number,
  fn: () => unknown | Promise<unknown>,
  before?: () => Promise<unknown>,
): Promise<Summary> {
  for (let i = 0; i < 50; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    if (before) await before();
    const t = performance.now();
    await fn();
    out.push((performance.now() - t) * 1000);
  }
  return summarize(out);
}

/**
 * Times the callout's stages `n` times each.
 *
 * @example
 * ```ts
 * for (const s of await benchCalloutStages(2000)) console.log(s.stage, s.us.p50);
 * ```
 */
export async function benchCalloutStages(n: number): Promise<StageResult[]> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-bench-callout-" });
  const store = await openSqliteStore(`${dir}/unibus.db`);
  try {
    const id = generateIdentity("bench");
    await addBenchUsers(store, [id], "bench");
    const issuer = new NativeNkeyPair(Prefix.Account, crypto.getRandomValues(new Uint8Array(32)));
    const server = new NativeNkeyPair(Prefix.Server, crypto.getRandomValues(new Uint8Array(32)));
    const userNkey = encodePublicNkey(Prefix.User, id.signPub);
    const nonce = "abcdefghijklmnopqrstuv";
    const sig = id.signer.sign(natsAuthMessage(nonce));
    const perms = grantedPermissions(id.signPubHex, aclRooms(id.signPubHex, []).granted);
    const jwtUser = () =>
      encodeUser("bench", userNkey, issuer, { pub: perms.pub, sub: perms.sub }, { aud: "APP" });
    const jwt = await jwtUser();
    let nonces = 0;
    const stages: Stage[] = [
      ["nonce signature verify", () => verifySignature(id.signPub, natsAuthMessage(nonce), sig)],
      ["store: getUser", () => store.getUser(id.signPubHex)],
      ["store: listRoomsForMember", () => store.listRoomsForMember(id.signPubHex)],
      [
        "store: both at once",
        () => Promise.all([store.getUser(id.signPubHex), store.listRoomsForMember(id.signPubHex)]),
      ],
      // What the callout reads: while nothing was committed, one change-token
      // read; after any write, that read plus both reads above.
      ["store: getUserAccess, nothing changed", () => store.getUserAccess(id.signPubHex)],
      [
        "store: getUserAccess after a write",
        () => store.getUserAccess(id.signPubHex),
        () => store.rememberNonce(`bench-${nonces++}`, Date.now() + 60_000),
      ],
      ["ACL build", () => grantedPermissions(id.signPubHex, aclRooms(id.signPubHex, []).granted)],
      ["user JWT (encodeUser, WebCrypto jti digest)", jwtUser],
      [
        "response JWT (encodeAuthorizationResponse, WebCrypto jti digest)",
        () => encodeAuthorizationResponse(userNkey, server.getPublicKey(), issuer, { jwt }, {}),
      ],
      [
        "user JWT, native jti digest (encodeUserJwt, what serve runs)",
        () =>
          encodeUserJwt("bench", userNkey, issuer, { pub: perms.pub, sub: perms.sub }, {
            aud: "APP",
          }),
      ],
      [
        "response JWT, native jti digest (encodeCalloutResponse)",
        () => encodeCalloutResponse(userNkey, server.getPublicKey(), issuer, { jwt }),
      ],
      [
        "SHA-512 via WebCrypto (the library's jti, 2 per answer)",
        () => crypto.subtle.digest("SHA-512", new TextEncoder().encode(jwt)),
      ],
    ];
    const out: StageResult[] = [];
    for (const [stage, fn, before] of stages) out.push({ stage, us: await time(n, fn, before) });
    return out;
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  for (const s of await benchCalloutStages(Number(Deno.args[0] ?? 2000))) {
    console.log(`${s.stage}\tp50 ${s.us.p50}\tp99 ${s.us.p99}\tmax ${s.us.max}`);
  }
}
