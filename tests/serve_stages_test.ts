import { parseServeArgs } from "../cli/serve.ts";
import { createLogger, type Logger } from "../lib/log.ts";
import { Lifecycle } from "../server/lifecycle.ts";
import { runServe } from "../server/serve.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { freePort, isAlive, waitPortClosed } from "./helpers/ports.ts";

/** A logger whose lines are kept, parsed, for the test to read. */
function recordingLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { log: createLogger("serve", { sink: (l) => lines.push(JSON.parse(l)) }), lines };
}

Deno.test("the lifecycle stops newest first, once, and a failing step does not stop the others", async () => {
  const { log, lines } = recordingLogger();
  const life = new Lifecycle(log);
  const stopped: string[] = [];
  life.started("lock", () => {
    stopped.push("lock");
  });
  life.started("child", async () => {
    await new Promise((r) => setTimeout(r, 1));
    stopped.push("child");
  });
  life.started("connection", () => {
    throw new Error("already closed");
  });
  life.started("listener", () => {
    stopped.push("listener");
  });
  await life.stopAll();
  assertEquals(stopped, ["listener", "child", "lock"]);
  const failed = lines.filter((l) => l.msg === "shutdown step failed");
  assertEquals(failed.map((l) => [l.step, l.error]), [["connection", "already closed"]]);
  await life.stopAll();
  assertEquals(stopped.length, 3, "a second stopAll runs nothing again");
});

Deno.test("runServe stops what it started when a later stage fails: child, connections, lock", async () => {
  // The HTTP stage comes last; a port already taken makes it fail after the
  // nats-server child, the connections and the store have started.
  const blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const httpPort = (blocker.addr as Deno.NetAddr).port;
  const natsPort = freePort();
  const dataDir = await Deno.makeTempDir({ prefix: "unibus-stages-" });
  const { log, lines } = recordingLogger();
  try {
    const opts = parseServeArgs([
      "--data-dir",
      dataDir,
      "--http-addr",
      `127.0.0.1:${httpPort}`,
      "--nats-port",
      String(natsPort),
      "--jetstream-max-store",
      "256MiB",
    ], {});
    await assertRejects(() => runServe(opts, log), Error, `cannot listen on 127.0.0.1:${httpPort}`);
    const started = lines.find((l) => l.msg === "nats-server started");
    assert(started, "the child had started before the HTTP stage");
    assert(!isAlive(Number(started.pid)), "the nats-server child outlived serve");
    await waitPortClosed(natsPort, 5000);
    for (const f of ["serve.pid", "nats-server.pid"]) {
      const left = await Deno.stat(`${dataDir}/${f}`).then(() => true, () => false);
      assert(!left, `${f} was left behind`);
    }
    assertEquals(lines.filter((l) => l.msg === "shutdown step failed"), []);
  } finally {
    blocker.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});
