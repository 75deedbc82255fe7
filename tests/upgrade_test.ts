/**
 * A data directory made by unibus 0.1.0 (one account for users, streams and
 * the control plane) is upgraded in place on the first start of this
 * version: the room streams move into the rooms' account, message by
 * message, the old ones are deleted, the history reads back whole through
 * the new wire, new messages are stored and acknowledged, and a second start
 * has nothing left to move. On both stores, from the fixtures made by 0.1.0
 * (tests/fixtures/upgrade/).
 */

import { jetstreamManager } from "@nats-io/jetstream";
import { connect as natsConnect, type NatsConnection } from "@nats-io/transport-node";
import { persistedRoomSubject } from "../lib/auth/acl.ts";
import { NativeNkeyPair, nkeyAuthenticatorFor, Prefix } from "../lib/auth/nkey.ts";
import { connect } from "../lib/client/client.ts";
import { loadIdentity } from "../lib/identity/identity.ts";
import { accountUser } from "../server/nats/account_users.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { startServe } from "./helpers/serve_process.ts";

const FIXTURES = new URL("./fixtures/upgrade/", import.meta.url).pathname;

interface Manifest {
  serveFlags: string[];
  persisted: { id: string; subject: string; messages: string[] };
  live: { id: string };
}

async function streamNames(nc: NatsConnection): Promise<string[]> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const names: string[] = [];
  for await (const n of jsm.streams.names()) names.push(n);
  return names.sort();
}

for (const kind of ["sqlite", "kv"]) {
  Deno.test(`a 0.1.0 data dir (${kind}) is upgraded in place: room streams moved, history whole, new messages stored`, async () => {
    const dir = await Deno.makeTempDir({ prefix: `unibus-upgrade-${kind}-` });
    try {
      const untar = await new Deno.Command("tar", {
        args: ["-xzf", `${FIXTURES}/${kind}-v0.1.0.tar.gz`, "-C", dir],
      }).output();
      assert(untar.success, new TextDecoder().decode(untar.stderr));
      const m: Manifest = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
      const data = `${dir}/data`;
      const flags = m.serveFlags.map((f) => f.replace("<data>", data));
      const stream = `ROOM_${m.persisted.id}`;
      const bob = await loadIdentity(`${dir}/bob.id`);
      const alice = await loadIdentity(`${dir}/alice.id`);
      const internal = await loadIdentity(`${data}/internal.id`);

      const s = await startServe({ dataDir: data, extraArgs: flags });
      const open: Array<{ close(): Promise<void> }> = [];
      try {
        const moved = await s.waitFor(
          (l) => l.msg === "room streams moved to the rooms' account",
          30_000,
        );
        assertEquals([moved.streams, moved.messages], [1, m.persisted.messages.length]);
        const url = `nats://127.0.0.1:${s.natsPort}`;
        const rooms = await natsConnect({
          servers: url,
          authenticator: nkeyAuthenticatorFor(accountUser(internal.signSeed, "rooms")),
        });
        open.push(rooms);
        const ctrl = await natsConnect({
          servers: url,
          authenticator: nkeyAuthenticatorFor(new NativeNkeyPair(Prefix.User, internal.signSeed)),
        });
        open.push(ctrl);
        assertEquals(await streamNames(rooms), [stream]);
        assert(!(await streamNames(ctrl)).includes(stream), "the old stream is gone");
        const info = await (await jetstreamManager(rooms, { checkAPI: false })).streams.info(
          stream,
        );
        assertEquals(info.config.subjects, [persistedRoomSubject(m.persisted.id)]);

        const cb = await connect({ natsServers: [url], ctrlUrls: [s.httpUrl], identity: bob });
        open.push(cb);
        const dec = (ms: Array<{ plaintext: Uint8Array }>) =>
          ms.map((x) => new TextDecoder().decode(x.plaintext));
        assertEquals(dec((await cb.history(m.persisted.id)).messages), m.persisted.messages);
        const ca = await connect({ natsServers: [url], ctrlUrls: [s.httpUrl], identity: alice });
        open.push(ca);
        await ca.publish(m.persisted.id, "after the upgrade");
        await ca.flush(); // resolves once the stream acknowledged it
        assertEquals(dec((await cb.history(m.persisted.id)).messages), [
          ...m.persisted.messages,
          "after the upgrade",
        ]);
      } finally {
        for (const c of open.reverse()) await c.close().catch(() => {});
        assertEquals((await s.stop()).code, 0);
      }

      // Started again: nothing left to move, the history as it was.
      const again = await startServe({ dataDir: data, extraArgs: flags });
      try {
        const cb = await connect({
          natsServers: [`nats://127.0.0.1:${again.natsPort}`],
          ctrlUrls: [again.httpUrl],
          identity: bob,
        });
        try {
          assertEquals((await cb.history(m.persisted.id)).messages.length, 21);
        } finally {
          await cb.close();
        }
        assert(
          !again.lines.some((l) => l.msg === "room streams moved to the rooms' account"),
          "a second start moves nothing",
        );
      } finally {
        assertEquals((await again.stop()).code, 0);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
