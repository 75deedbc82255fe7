/**
 * The client commands' command-line surface, without a bus: every one takes
 * `--help` (exit 0, a usage line), a usage mistake is exit 2, and without a
 * context or flags they say how to make one.
 */

import { runCli } from "../cli/main.ts";
import { assertEquals, assertMatch } from "./helpers/assert.ts";

const COMMANDS = [
  "context",
  "room",
  "send",
  "listen",
  "request",
  "respond",
  "history",
  "blob",
  "mcp",
];

/** Runs the CLI with console output captured. */
async function cli(argv: string[], env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const [log, error] = [console.log, console.error];
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, Deno.env.get(k)]));
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  for (const [k, v] of Object.entries(env)) Deno.env.set(k, v);
  try {
    const code = await runCli(argv);
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) Deno.env.delete(k);
      else Deno.env.set(k, v);
    }
  }
}

Deno.test("every client command answers --help with its usage", async () => {
  for (const c of COMMANDS) {
    const r = await cli([c, "--help"]);
    assertEquals(r.code, 0, `${c}: ${r.err}`);
    assertMatch(r.out, /usage: unibus /, c);
  }
});

Deno.test("client commands: usage mistakes are exit 2 with one line; no context says how to make one", async () => {
  const home = await Deno.makeTempDir({ prefix: "unibus-nohome-" });
  try {
    const env = { HOME: home, XDG_CONFIG_HOME: "", UNIBUS_CONTEXT: "" };
    for (
      const argv of [
        ["room", "create"],
        ["room", "frobnicate", "x"],
        ["send"],
        ["listen"],
        ["request", "room.only"],
        ["respond", "r", "--echo", "--exec", "cat"],
        ["blob", "get", "r", "not-a-token", "--out", "x"],
        [
          "context",
          "save",
          "../escape",
          "--identity-file",
          "a",
          "--nats-seeds",
          "nats://h:1",
          "--ctrl-seeds",
          "http://h:2",
        ],
        ["room", "create", "a.b", "--policy", "encrypt"],
      ]
    ) {
      const r = await cli(argv, env);
      assertEquals(r.code, 2, `${argv.join(" ")}: ${r.err}`);
      assertEquals(r.err.split("\n").length, 1, `${argv.join(" ")}: ${r.err}`);
    }
    const none = await cli(["room", "ls"], env);
    assertEquals(none.code, 2);
    assertMatch(none.err, /unibus context save NAME/);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
