/**
 * The TypeScript client as the Python interop tests' peer: one process, one
 * `connect()`, driven by JSON lines on stdin (`{"id", "op", …}`), answering
 * each with `{"id", "ok": true, …}` or `{"id", "ok": false, "error"}` and
 * reporting every message its subscriptions deliver as `{"event": "message", …}`.
 *
 * Usage: deno run -A ts_peer.ts IDENTITY_FILE NATS_URL CTRL_URL
 *
 * @module
 */

import { connect, loadIdentity, type RoomPolicy } from "../../../lib/client/mod.ts";

const [idFile, natsUrl, ctrlUrl] = Deno.args;
const client = await connect({
  natsServers: [natsUrl],
  ctrlUrls: [ctrlUrl],
  identity: await loadIdentity(idFile),
});
const out = (obj: unknown) => console.log(JSON.stringify(obj));
const text = (b: Uint8Array) => new TextDecoder().decode(b);

type Command = {
  id: number;
  op: string;
  room?: string;
  subject?: string;
  policy?: RoomPolicy;
  members?: string[];
  member?: string;
  texts?: string[];
  text?: string;
};

async function run(c: Command): Promise<Record<string, unknown>> {
  const room = c.room ?? "";
  switch (c.op) {
    case "create": {
      const info = await client.createRoom(c.subject!, c.policy, { members: c.members ?? [] });
      return { room: info.id };
    }
    case "subscribe": {
      const sub = await client.subscribe(room, (meta, data) =>
        out({
          event: "message",
          room: meta.roomId,
          sender: meta.sender,
          session: meta.session,
          index: meta.index,
          epoch: meta.epoch,
          text: text(data),
          request: meta.reply !== undefined,
        }));
      subs.set(room, sub);
      return {};
    }
    case "respond": {
      // Answers every other member's request with "ts echo: <text>".
      await client.subscribe(room, (meta, data) => {
        if (meta.reply && meta.sender !== client.identity.signPubHex) {
          client.respond(room, meta, `ts echo: ${text(data)}`).catch(() => {});
        }
      });
      return {};
    }
    case "publish": {
      // All in one tick: the client sends them as one packet.
      await Promise.all((c.texts ?? []).map((t) => client.publish(room, t)));
      await client.flush();
      return {};
    }
    case "request": {
      const r = await client.request(room, c.text!, { timeoutMs: 10_000 });
      return { sender: r.meta.sender, text: text(r.plaintext) };
    }
    case "history": {
      const { messages } = await client.history(room);
      return {
        texts: messages.map((m) => text(m.plaintext)),
        senders: messages.map((m) => m.meta.sender),
      };
    }
    case "add":
      return { epoch: (await client.addMember(room, c.member!)).epoch };
    case "remove":
      return { epoch: (await client.removeMember(room, c.member!)).epoch };
    case "stats":
      return { stats: subs.get(room)?.stats ?? null };
    case "refresh":
      await client.refreshSession();
      return {};
  }
  throw new Error(`unknown op ${c.op}`);
}

const subs = new Map<string, { stats: unknown }>();
out({ event: "ready" });
const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let buffered = "";
for await (const chunk of lines) {
  buffered += chunk;
  let nl;
  while ((nl = buffered.indexOf("\n")) >= 0) {
    const line = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    if (!line.trim()) continue;
    const c = JSON.parse(line) as Command;
    run(c).then(
      (r) => out({ id: c.id, ok: true, ...r }),
      (e) => out({ id: c.id, ok: false, error: String(e?.message ?? e) }),
    );
  }
}
await client.close();
