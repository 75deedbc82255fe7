import { assertEquals, assertMatch } from "./helpers/assert.ts";
import { freePort } from "./helpers/ports.ts";
import { runUnibus, startServe } from "./helpers/serve_process.ts";

Deno.test("unibus status: a healthy node exits 0; one unreachable among the seeds makes it exit 1", async () => {
  const s = await startServe();
  try {
    const ok = await runUnibus(["status", "--ctrl-seeds", s.httpUrl]);
    assertEquals(ok.code, 0, ok.stdout + ok.stderr);
    assertMatch(
      ok.stdout,
      /^http:\/\/127\.0\.0\.1:\d+ {2}ok {2}unibus \d+\.\d+\.\d+ .*store sqlite {2}data plane up \(jetstream\) {2}connections \d+$/m,
    );
    const js = JSON.parse(
      (await runUnibus(["status", "--ctrl-seeds", s.httpUrl, "--json"])).stdout,
    );
    assertEquals(js.healthy, true);
    assertEquals(js.nodes[0].health.posture.store, "sqlite");
    assertEquals(typeof js.nodes[0].connections, "number");

    const gone = `http://127.0.0.1:${freePort()}`;
    const mixed = await runUnibus([
      "status",
      "--ctrl-seeds",
      `${s.httpUrl},${gone}`,
      "--timeout",
      "2",
    ]);
    assertEquals(mixed.code, 1);
    const lines = mixed.stdout.split("\n");
    assertMatch(lines[0], / ok /);
    assertMatch(lines[1], new RegExp(`^${gone} {2}UNREACHABLE`));
  } finally {
    await s.stop();
  }
});

Deno.test("unibus status: usage mistakes are exit 2 with one line", async () => {
  for (
    const [argv, want] of [
      [["status", "--ctrl-seeds", "nats://127.0.0.1:4222"], /is not an http\(s\) URL/],
      [["status", "--ctrl-seeds", "::"], /is not an http\(s\) URL/],
      [["status", "--timeout", "0"], /--timeout must be/],
      [
        ["status", "--ctrl-seeds", "https://127.0.0.1:8470", "--ca", "/nonexistent/ca.crt"],
        /--ca \/nonexistent\/ca.crt/,
      ],
      [["status", "--ca", "/nonexistent/ca.crt"], /must be https:\/\/ when --ca is given/],
      [["status", "extra"], /unexpected argument/],
    ] as const
  ) {
    const r = await runUnibus([...argv]);
    assertEquals(r.code, 2, `${argv.join(" ")}: ${r.stdout}`);
    const errLines = r.stderr.split("\n").filter((l) => l.length > 0);
    assertEquals(errLines.length, 1, r.stderr);
    assertMatch(errLines[0], want);
  }
});
