/**
 * The auth callout's log says "connection admitted" only once the answer has
 * gone out (security review after issue 8): logged before the send, a send
 * that failed read as an admission followed by "could not answer".
 * Against a real nats-server on loopback and a real SQLite store.
 */

import { NativeNkeyPair, natsAuthMessage, Prefix } from "../lib/auth/nkey.ts";
import { toBase64Url } from "../lib/e2e/bytes.ts";
import { createLogger } from "../lib/log.ts";
import { openSqliteStore } from "../lib/store/sqlite.ts";
import { AUTH_CALLOUT_SUBJECT, startAuthCallout } from "../server/auth/callout.ts";
import { SessionRegistry } from "../server/auth/sessions.ts";
import { DEFAULT_LIMITS } from "../server/limits.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { addBusUser, type BusUser } from "./helpers/bus.ts";
import { startNatsServer } from "./helpers/nats_server.ts";
import { waitFor } from "./helpers/wait.ts";

const enc = new TextEncoder();
const b64json = (v: unknown) => toBase64Url(enc.encode(JSON.stringify(v)));

/** An authorization request as a nats-server sends it, for `user`'s connect. */
function authRequest(server: NativeNkeyPair, user: BusUser, cid: number): string {
  const nonce = `nonce-${crypto.randomUUID()}`;
  const claims = {
    iss: server.getPublicKey(),
    nats: {
      server_id: { id: server.getPublicKey() },
      user_nkey: NativeNkeyPair.generate(Prefix.User).getPublicKey(),
      client_info: { id: cid, nonce },
      connect_opts: {
        nkey: user.kp.getPublicKey(),
        sig: toBase64Url(user.kp.sign(natsAuthMessage(nonce))),
      },
    },
  };
  const signed = `${b64json({ typ: "JWT", alg: "ed25519-nkey" })}.${b64json(claims)}`;
  return `${signed}.${toBase64Url(server.sign(enc.encode(signed)))}`;
}

Deno.test("'connection admitted' is logged only after the answer is sent, never before a failed send", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-calloutlog-" });
  const store = await openSqliteStore(`${dir}/unibus.db`);
  const ns = await startNatsServer();
  const nc = await ns.connect();
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger("auth", { sink: (l) => lines.push(JSON.parse(l)) });
  const callout = startAuthCallout({
    limits: DEFAULT_LIMITS,
    nc,
    issuer: NativeNkeyPair.generate(Prefix.Account),
    store,
    sessions: new SessionRegistry(),
    log,
  });
  try {
    await nc.flush();
    const alice = await addBusUser(store, "alice");
    const server = NativeNkeyPair.generate(Prefix.Server);
    const byMsg = (msg: string, cid: number) =>
      lines.filter((l) => l.msg === msg && (l.cid === cid || msg !== "connection admitted"));

    // Admissible, but the answer cannot be sent: no reply subject.
    nc.publish(AUTH_CALLOUT_SUBJECT, authRequest(server, alice, 1));
    await waitFor(
      () =>
        byMsg("auth callout could not answer", 1).length + byMsg("connection admitted", 1).length,
      { what: "the request to be handled" },
    );
    assertEquals(byMsg("connection admitted", 1), [], "admitted logged for an answer never sent");
    assertEquals(byMsg("auth callout could not answer", 1).length, 1);

    // The same request with a reply: answered, then logged as admitted.
    const reply = await nc.request(AUTH_CALLOUT_SUBJECT, authRequest(server, alice, 2), {
      timeout: 5000,
    });
    assert(reply.data.byteLength > 0, "an answer");
    const admitted = await waitFor(() => byMsg("connection admitted", 2)[0], {
      what: "the admission to be logged",
    });
    assertEquals([admitted.handle, admitted.signPub], ["alice", alice.hex]);
  } finally {
    await callout.stop();
    await nc.close();
    await store.close();
    await ns.stop({ remove: true });
    await Deno.remove(dir, { recursive: true });
  }
});
