import { resolveNatsServerBin } from "../server/nats/binary.ts";
import { assertEquals, assertMatch } from "./helpers/assert.ts";
import { freePort } from "./helpers/ports.ts";
import { runScript } from "./helpers/script.ts";
import { waitFor } from "./helpers/wait.ts";

const GUARD = new URL("../lib/nats/connection_reset_guard.ts", import.meta.url).href;

/** Runs `source` in its own process; its stdout and stderr together. */
async function run(source: string): Promise<{ code: number; out: string }> {
  const r = await runScript(source);
  return { code: r.code, out: r.stdout + r.stderr };
}

Deno.test("a process with the guard survives repeated NATS refusals", async () => {
  // A real nats-server that refuses every client: password auth, wrong password.
  const bin = (await resolveNatsServerBin({ env: Deno.env.toObject() })).path;
  const port = freePort();
  const nats = new Deno.Command(bin, {
    args: ["-a", "127.0.0.1", "-p", String(port), "--user", "u", "--pass", "right"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    // Refusals by a server that never started would prove nothing about resets.
    await waitFor(async () => {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return true;
    }, { timeoutMs: 5000, what: `nats-server to listen on ${port}` });
    const { code, out } = await run(`
      import { connect } from "@nats-io/transport-node";
      import { installConnectionResetGuard } from "${GUARD}";
      installConnectionResetGuard();
      let refused = 0;
      for (let i = 0; i < 20; i++) {
        try {
          await connect({ servers: "127.0.0.1:${port}", user: "u", pass: "wrong", maxReconnectAttempts: 0 });
        } catch { refused++; }
      }
      await new Promise((r) => setTimeout(r, 500));
      console.log("refused", refused);
    `);
    assertEquals(code, 0, out);
    assertMatch(out, /refused 20/);
  } finally {
    nats.kill("SIGKILL");
    await nats.status;
  }
});

Deno.test("the guard swallows connection resets only: any other uncaught error still ends the process", async () => {
  const reset = await run(`
    import { installConnectionResetGuard, swallowedConnectionResets } from "${GUARD}";
    installConnectionResetGuard();
    setTimeout(() => { throw Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }); });
    await new Promise((r) => setTimeout(r, 100));
    console.log("alive after", swallowedConnectionResets());
  `);
  assertEquals(reset.code, 0, reset.out);
  assertMatch(reset.out, /alive after 1/);

  const other = await run(`
    import { installConnectionResetGuard } from "${GUARD}";
    installConnectionResetGuard();
    setTimeout(() => { throw new TypeError("a real bug"); });
    await new Promise((r) => setTimeout(r, 100));
    console.log("should not print");
  `);
  assertEquals(other.code, 1, other.out);
  assertMatch(other.out, /a real bug/);
});
