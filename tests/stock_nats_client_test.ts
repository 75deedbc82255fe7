/**
 * A stock NATS client logs in to an enforce-mode node as docs/clients.md
 * describes: nats.js (`@nats-io/transport-node`) and `@nats-io/nkeys` alone,
 * given only an identity file made with `unibus identity new`. Nothing of
 * the unibus client library or lib/auth is imported here; the room the users
 * share is made by the public client library in a separate process, as
 * another program of the user's would.
 *
 * @module
 */

import { connect, type NatsConnection, nkeyAuthenticator } from "@nats-io/transport-node";
import { encode as base64, fromSeed, Prefix } from "@nats-io/nkeys";
// The package root has no way to spell a raw seed as an nkey seed string.
import { Codec } from "@nats-io/nkeys/lib/codec.js";
import { installConnectionResetGuard } from "../lib/nats/connection_reset_guard.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { publishDenied, subscribeDenied } from "./helpers/denied.ts";
import { runScript } from "./helpers/script.ts";
import { runUnibus, startServe } from "./helpers/serve_process.ts";
import { waitFor } from "./helpers/wait.ts";

// A refused connection ends in a late ECONNRESET under Deno's node-compat;
// that is the runtime, not the login (see lib/nats/connection_reset_guard.ts).
installConnectionResetGuard();

const enc = new TextEncoder();
const ROOM_SUBJECT = "stock.room";

/** What a user has: the identity file `unibus identity new` wrote. */
interface IdentityFile {
  sign_pub: string;
  sign_seed: string;
}

function hexBytes(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g)!, (h) => parseInt(h, 16));
}

/** docs/clients.md, nats.js: the login with nats.js and @nats-io/nkeys only. */
async function stockLogin(
  port: number,
  file: IdentityFile,
  opts: { ownInbox?: boolean } = {},
): Promise<NatsConnection> {
  const kp = fromSeed(Codec.encodeSeed(Prefix.User, hexBytes(file.sign_seed)));
  return await connect({
    servers: `127.0.0.1:${port}`,
    inboxPrefix: opts.ownInbox === false ? undefined : `_INBOX.${file.sign_pub}`,
    authenticator: (nonce?: string) => ({
      nkey: kp.getPublicKey(),
      sig: nonce ? base64(kp.sign(enc.encode(`unibus/nats-auth/v1\n${nonce}`))) : "",
    }),
    reconnect: false,
    timeout: 3000,
  });
}

/** `unibus identity new` and `unibus user add`, through the CLI. */
async function newUser(dir: string, db: string, handle: string) {
  const made = await runUnibus(["identity", "new", "--out", `${dir}/${handle}.id`, "--json"]);
  assertEquals(made.code, 0, made.stderr);
  const pub = JSON.parse(made.stdout) as { signPub: string; kexPub: string; kexSig: string };
  const added = await runUnibus([
    "user",
    "add",
    "--handle",
    handle,
    "--sign-pub",
    pub.signPub,
    "--kex-pub",
    pub.kexPub,
    "--kex-sig",
    pub.kexSig,
    "--db",
    db,
  ]);
  assertEquals(added.code, 0, added.stderr);
  const file = JSON.parse(await Deno.readTextFile(`${dir}/${handle}.id`)) as IdentityFile;
  return { path: `${dir}/${handle}.id`, file };
}

/** Alice creates a persisted room and adds Bob, with the public client library, in a child. */
async function createSharedRoom(
  natsPort: number,
  httpUrl: string,
  alicePath: string,
  bobPub: string,
): Promise<string> {
  const mod = new URL("../lib/client/mod.ts", import.meta.url).href;
  const out = await runScript(`import { connect, loadIdentity } from "${mod}";
const c = await connect({
  natsServers: ["nats://127.0.0.1:${natsPort}"],
  ctrlUrls: ["${httpUrl}"],
  identity: await loadIdentity(${JSON.stringify(alicePath)}),
});
const room = await c.createRoom("${ROOM_SUBJECT}", { encrypt: true, sign: true, persist: true });
await c.addMember(room, "${bobPub}");
console.log(room.id);
await c.close();
`);
  assertEquals(out.code, 0, out.stderr);
  return out.stdout.trim();
}

Deno.test("a stock nats.js client logs in with its identity file and is confined to its room", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-stock-" });
  const db = `${dir}/unibus.db`;
  const alice = await newUser(dir, db, "alice");
  const bob = await newUser(dir, db, "bob");
  const s = await startServe({ dataDir: dir, extraArgs: ["--bus-auth", "enforce"] });
  const open: NatsConnection[] = [];
  try {
    const roomId = await createSharedRoom(
      s.natsPort,
      s.httpUrl,
      alice.path,
      bob.file.sign_pub,
    );

    await t.step(
      "the stock nkey authenticator, which signs the bare nonce, is refused",
      async () => {
        const seed = Codec.encodeSeed(Prefix.User, hexBytes(alice.file.sign_seed));
        await assertRejects(
          () =>
            connect({
              servers: `127.0.0.1:${s.natsPort}`,
              authenticator: nkeyAuthenticator(seed),
              reconnect: false,
              timeout: 3000,
            }),
          Error,
          "Authorization Violation",
        );
      },
    );

    const na = await stockLogin(s.natsPort, alice.file);
    open.push(na);
    const nb = await stockLogin(s.natsPort, bob.file);
    open.push(nb);

    // A persisted room's packets travel on `$UNIBUS.ROOM.<id>` (protocol.md §2.10).
    const wire = `$UNIBUS.ROOM.${roomId}`;
    await t.step(
      "members publish and subscribe on their persisted room's wire subject",
      async () => {
        const got = nb.subscribe(wire, { max: 1 });
        await nb.flush();
        na.publish(wire, "bytes from a stock client");
        for await (const m of got) assertEquals(m.string(), "bytes from a stock client");
      },
    );

    await t.step("and nowhere else", async () => {
      await publishDenied(na, "other.subject");
      await publishDenied(na, ROOM_SUBJECT); // a persisted room's name is not its wire subject
      await publishDenied(na, `$JS.API.STREAM.INFO.ROOM_${roomId}`);
      await publishDenied(na, "$JS.API.INFO");
      await publishDenied(na, `$JS.API.CONSUMER.CREATE.ROOM_${roomId}`);
      await publishDenied(na, `_INBOX.${bob.file.sign_pub}.unibus.refresh`);
      await subscribeDenied(na, ">");
      await subscribeDenied(na, `_INBOX.${bob.file.sign_pub}.>`);
    });

    await t.step(
      "history by hand: the bounds and each message by direct get, as protocol.md §2.10 says",
      async () => {
        const stream = `ROOM_${roomId}`;
        const get = (body: Record<string, unknown>) =>
          nb.request(`$JS.API.DIRECT.GET.${stream}`, JSON.stringify(body), { timeout: 3000 });
        // The message of the step above is stored; JetStream stores it shortly after routing it.
        const last = await waitFor(async () => {
          const m = await get({ last_by_subj: wire });
          return m.headers?.code === 0 && m;
        }, { what: `${stream} to store the room's message` });
        const seq = Number(last.headers?.get("Nats-Sequence"));
        const first = await get({ seq: 1, next_by_subj: wire });
        assertEquals(first.headers?.get("Nats-Sequence"), String(seq));

        const m = await get({ seq });
        assertEquals(m.string(), "bytes from a stock client");
        assertEquals(m.headers?.get("Nats-Stream"), stream);
        assertEquals(m.headers?.get("Nats-Subject"), wire);
        assertEquals(m.headers?.get("Nats-Sequence"), String(seq));
        assert(!isNaN(Date.parse(m.headers?.get("Nats-Time-Stamp") ?? "")), "an RFC 3339 time");

        const none = await nb.request(
          `$JS.API.DIRECT.GET.${stream}`,
          JSON.stringify({ seq: seq + 1 }),
          {
            timeout: 3000,
          },
        );
        assertEquals([none.headers?.code, none.headers?.description], [404, "Message Not Found"]);
        assertEquals(none.data.length, 0);
      },
    );

    await t.step("a reply subject outside the own inbox prefix cannot receive", async () => {
      // Without inboxPrefix, nats.js answers requests on `_INBOX.<random>`: refused.
      const plain = await stockLogin(s.natsPort, bob.file, { ownInbox: false });
      open.push(plain);
      await assertRejects(
        () =>
          plain.request(`$JS.API.DIRECT.GET.ROOM_${roomId}`, JSON.stringify({ seq: 1 }), {
            timeout: 1000,
          }),
        Error,
        'Permissions Violation for Subscription to "_INBOX.',
      );
    });
  } finally {
    for (const nc of open) await nc.close().catch(() => {});
    await s.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
