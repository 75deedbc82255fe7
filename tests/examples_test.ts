import { generateIdentity, saveIdentity } from "../lib/identity/identity.ts";
import { assertEquals, assertMatch } from "./helpers/assert.ts";
import { spawnUnibus, startServe, userAddArgs } from "./helpers/serve_process.ts";

const EXAMPLE = new URL("../scripts/examples/two_agents.ts", import.meta.url).pathname;

async function registered(dir: string, dataDir: string, handle: string): Promise<string> {
  const file = `${dir}/${handle}.id`;
  const id = generateIdentity(handle);
  await saveIdentity(file, id);
  // Through the real CLI, as the README tells an operator to.
  const p = spawnUnibus([...userAddArgs(id, "member", handle), "--db", `${dataDir}/unibus.db`]);
  assertEquals((await p.finished).code, 0, p.stderr());
  return file;
}

Deno.test("the README's two-agent example runs as is against a serve in enforce mode", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-example-" });
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce"] });
  try {
    const scout = await registered(dir, s.dataDir, "scout");
    const planner = await registered(dir, s.dataDir, "planner");
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "-A",
        EXAMPLE,
        scout,
        planner,
        `nats://127.0.0.1:${s.natsPort}`,
        s.httpUrl,
      ],
      env: { NO_COLOR: "1" },
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, text);
    assertMatch(text, /scout {3}<- map the north ridge/);
    assertMatch(text, /planner <- done: map the north ridge/);
  } finally {
    await s.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
