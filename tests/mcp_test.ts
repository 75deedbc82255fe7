/**
 * `unibus mcp` driven by the MCP SDK's own client over stdio: two agent
 * processes (two identities, two contexts) against a real enforce-mode
 * serve. One creates a room with the other, messages go each way, a request
 * is answered through next_request/reply, a removed member reads nothing
 * sent after its removal, and bad input is a tool error, not a crash.
 */

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { saveContext } from "../cli/contexts.ts";
import { generateIdentity, type Identity, saveIdentity } from "../lib/identity/identity.ts";
import { openSqliteStore } from "../lib/store/sqlite.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { startServe } from "./helpers/serve_process.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Deno's cache directory as this process uses it. */
function denoDir(): string {
  return Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`;
}

type ToolResult = {
  isError?: boolean;
  structuredContent?: Record<string, unknown>;
  content: Array<{ type: string; text?: string }>;
};

/** One `unibus mcp` process and the SDK client talking to it. */
async function agent(config: string, context: string): Promise<{
  call(name: string, args?: Record<string, unknown>): Promise<ToolResult>;
  close(): Promise<void>;
}> {
  const transport = new StdioClientTransport({
    command: "bash",
    args: [`${ROOT}/scripts/unibus`, "mcp", "--context", context],
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: config,
      XDG_CONFIG_HOME: config,
      DENO_NO_UPDATE_CHECK: "1",
      // Deno's module cache stays the one set-up filled, whatever HOME is.
      DENO_DIR: denoDir(),
    },
    stderr: "inherit",
  });
  const client = new Client({ name: "unibus-test", version: "1" });
  await client.connect(transport);
  return {
    async call(name, args = {}) {
      return await client.callTool({ name, arguments: args }, undefined, {
        timeout: 60_000,
      }) as ToolResult;
    },
    async close() {
      await client.close();
    },
  };
}

function value(r: ToolResult): Record<string, unknown> {
  assert(!r.isError, `tool error: ${r.content[0]?.text}`);
  return r.structuredContent!;
}

async function register(db: string, ids: Identity[]): Promise<void> {
  const store = await openSqliteStore(db);
  try {
    for (const id of ids) {
      await store.addUser({
        signPub: id.signPubHex,
        handle: id.handle!,
        role: "member",
        kexPub: id.kexPubHex,
        kexSig: id.kexSigHex,
      });
    }
  } finally {
    await store.close();
  }
}

Deno.test("two unibus mcp agents: a room, messages each way, request/reply, removal, tool errors", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-mcp-" });
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce"] });
  const agents: Array<{ close(): Promise<void> }> = [];
  const env = Deno.env.get("XDG_CONFIG_HOME");
  try {
    const ada = generateIdentity("ada");
    const bob = generateIdentity("bob");
    await register(`${s.dataDir}/unibus.db`, [ada, bob]);
    Deno.env.set("XDG_CONFIG_HOME", dir);
    for (const id of [ada, bob]) {
      await saveIdentity(`${dir}/${id.handle}.id`, id);
      await saveContext(id.handle!, {
        identityFile: `${dir}/${id.handle}.id`,
        natsSeeds: [`nats://127.0.0.1:${s.natsPort}`],
        ctrlSeeds: [s.httpUrl],
        ca: null,
      });
    }
    const a = await agent(dir, "ada");
    agents.push(a);
    const b = await agent(dir, "bob");
    agents.push(b);

    const room = value(
      await a.call("create_room", {
        subject: "agents.team",
        policy: ["encrypt", "sign"],
        members: ["bob"],
      }),
    );
    assertEquals(room.subject, "agents.team");
    // bob's agent notices the room it was added to, then hears ada.
    const heard = async (who: typeof a, text: string) => {
      for (let n = 0; n < 20; n++) {
        const r = value(await who.call("read_messages", { wait_seconds: 1 }));
        const msgs = r.messages as Array<Record<string, unknown>>;
        const m = msgs.find((x) => x.text === text);
        if (m) return m;
      }
      throw new Error(`never read "${text}"`);
    };
    let seenByBob: Record<string, unknown> | null = null;
    for (let n = 0; n < 10 && !seenByBob; n++) {
      value(await a.call("send_message", { room: "agents.team", text: `hello bob ${n}` }));
      const r = value(await b.call("read_messages", { wait_seconds: 2 }));
      seenByBob = (r.messages as Array<Record<string, unknown>>)[0] ?? null;
    }
    assert(seenByBob, "bob never read ada's message");
    assertEquals([seenByBob.sender, seenByBob.handle, seenByBob.room], [
      ada.signPubHex,
      "ada",
      room.id,
    ]);
    assertMatch(String(seenByBob.text), /^hello bob \d+$/);
    value(await b.call("send_message", { room: room.id, text: "hello ada" }));
    const m = await heard(a, "hello ada");
    assertEquals(m.sender, bob.signPubHex);

    // A request from ada, answered by bob's agent.
    const asked = a.call("request", { room: "agents.team", text: "ping", timeout_seconds: 20 });
    const req = value(await b.call("next_request", { room: "agents.team", wait_seconds: 15 }));
    assertEquals([req.text, req.sender, req.handle], ["ping", ada.signPubHex, "ada"]);
    value(await b.call("reply", { request_id: req.request_id, text: "pong" }));
    assertEquals(value(await asked), { text: "pong", responder: bob.signPubHex, handle: "bob" });
    assertEquals(
      value(await b.call("next_request", { room: "agents.team", wait_seconds: 0 })),
      { request_id: null },
    );

    // Bad input: a tool error with a message, and the agent keeps serving.
    const tooBig = await a.call("send_message", { room: room.id, text: "x".repeat(70_000) });
    assert(tooBig.isError);
    assertMatch(tooBig.content[0].text!, /at most 65536/);
    const noRoom = await a.call("send_message", { room: "no.such.room", text: "hi" });
    assert(noRoom.isError);
    const noUser = await a.call("add_member", { room: room.id, member: "nobody-by-that-name" });
    assert(noUser.isError);
    assertMatch(noUser.content[0].text!, /no active user/);
    assertEquals((value(await a.call("list_rooms")).rooms as unknown[]).length, 1);

    // bob removed: nothing ada sends afterwards reaches bob's reads.
    value(await a.call("remove_member", { room: room.id, member: bob.signPubHex }));
    value(await b.call("read_messages", { wait_seconds: 0 })); // what was already there
    value(await a.call("send_message", { room: room.id, text: "after the removal" }));
    const after = value(await b.call("read_messages", { wait_seconds: 3 }));
    assertEquals(
      (after.messages as Array<{ text: string }>).filter((x) => x.text === "after the removal"),
      [],
    );
  } finally {
    for (const x of agents) await x.close().catch(() => {});
    if (env === undefined) Deno.env.delete("XDG_CONFIG_HOME");
    else Deno.env.set("XDG_CONFIG_HOME", env);
    await s.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
