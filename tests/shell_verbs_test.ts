/**
 * The bus from the shell, as a new user meets it: from an empty HOME, with
 * only `unibus` commands run through the real launcher (`scripts/unibus`)
 * as separate processes, against a real enforce-mode serve: two
 * identities, registered, two contexts, a persisted room with the second
 * as member, `listen --json` in one process and `send` in another, a
 * `request` answered by `respond --exec`, and `history`.
 */

import { openSqliteStore } from "../lib/store/sqlite.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { startServe } from "./helpers/serve_process.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

interface Shell {
  /** Runs `unibus ...args` to the end, with `stdin` as its input. */
  run(args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Starts `unibus ...args`; resolves once it wrote `ready` to stderr. */
  start(args: string[]): Promise<Running>;
}

interface Running {
  finished: Promise<{ code: number; stdout: string; stderr: string }>;
  kill(): void;
}

/** `unibus` as a user in `home` runs it: the launcher, HOME set, no context in the environment. */
function shell(home: string, cwd: string): Shell {
  const command = (args: string[], stdin: boolean) =>
    new Deno.Command("bash", {
      args: [`${ROOT}/scripts/unibus`, ...args],
      cwd,
      env: {
        HOME: home,
        XDG_CONFIG_HOME: "",
        UNIBUS_CONTEXT: "",
        DENO_NO_UPDATE_CHECK: "1",
        // Deno's module cache stays the one set-up filled, whatever HOME is.
        DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`,
      },
      stdin: stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  const collect = async (child: Deno.ChildProcess, stderrSeen?: (s: string) => void) => {
    let stderr = "";
    const err = (async () => {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        stderr += chunk;
        stderrSeen?.(stderr);
      }
    })();
    const stdout = new Response(child.stdout).text();
    const [status, out] = await Promise.all([child.status, stdout, err]);
    return { code: status.code, stdout: out, stderr };
  };
  return {
    async run(args, stdin) {
      const child = command(args, stdin !== undefined);
      if (stdin !== undefined) {
        const w = child.stdin.getWriter();
        await w.write(new TextEncoder().encode(stdin));
        await w.close();
      }
      const t = setTimeout(() => child.kill("SIGKILL"), 60_000);
      try {
        return await collect(child);
      } finally {
        clearTimeout(t);
      }
    },
    async start(args) {
      const child = command(args, false);
      const ready = Promise.withResolvers<void>();
      const finished = collect(child, (s) => s.split("\n").includes("ready") && ready.resolve());
      const t = setTimeout(() => child.kill("SIGKILL"), 60_000);
      finished.finally(() => clearTimeout(t));
      await Promise.race([
        ready.promise,
        finished.then((r) => {
          throw new Error(`exited before ready (${r.code}): ${r.stderr}`);
        }),
      ]);
      return {
        finished,
        kill: () => {
          try {
            child.kill("SIGTERM");
          } catch { /* ended */ }
        },
      };
    },
  };
}

Deno.test("from an empty HOME: identities, contexts, a room, listen/send, request/respond, history", async () => {
  const home = await Deno.makeTempDir({ prefix: "unibus-home-" });
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce"] });
  const running: Running[] = [];
  try {
    const sh = shell(home, home);
    const nats = `nats://127.0.0.1:${s.natsPort}`;
    const keys: Record<string, string> = {};
    for (const who of ["ada", "bob"]) {
      const made = await sh.run(["identity", "new", "--out", `${who}.id`, "--handle", who]);
      assertEquals(made.code, 0, made.stderr);
      const add = made.stdout.split("\n").find((l) => l.trim().startsWith("unibus user add"));
      assert(add, made.stdout);
      const reg = await sh.run([
        ...add.trim().split(/\s+/).slice(1),
        "--db",
        `${s.dataDir}/unibus.db`,
      ]);
      assertEquals(reg.code, 0, reg.stderr);
      const saved = await sh.run([
        "context",
        "save",
        who,
        "--identity-file",
        `${who}.id`,
        "--nats-seeds",
        nats,
        "--ctrl-seeds",
        s.httpUrl,
        ...(who === "ada" ? ["--select"] : []),
      ]);
      assertEquals(saved.code, 0, saved.stderr);
    }
    const store = await openSqliteStore(`${s.dataDir}/unibus.db`);
    for (const u of await store.listUsers()) keys[u.handle] = u.signPub;
    await store.close();

    // Contexts: 0600 files in a 0700 directory, holding paths, never a key.
    const dir = `${home}/.config/unibus/context`;
    assertEquals((await Deno.stat(dir)).mode! & 0o777, 0o700);
    assertEquals((await Deno.stat(`${dir}/ada.json`)).mode! & 0o777, 0o600);
    const saved = await Deno.readTextFile(`${dir}/ada.json`);
    assertEquals(JSON.parse(saved).identity_file, `${home}/ada.id`);
    const seed = JSON.parse(await Deno.readTextFile(`${home}/ada.id`));
    for (const v of Object.values(seed)) {
      if (typeof v === "string" && v.length >= 32) {
        assert(!saved.includes(v), "key material in a context");
      }
    }
    const ls = await sh.run(["context", "ls"]);
    assertEquals(ls.stdout.trim().split("\n"), ["* ada", "  bob"]);

    // ada (the selected context) makes a persisted room with bob, named by handle.
    const made = await sh.run([
      "room",
      "create",
      "team.chat",
      "--policy",
      "encrypt,sign,persist",
      "--member",
      "bob",
      "--json",
    ]);
    assertEquals(made.code, 0, made.stderr);
    const room = JSON.parse(made.stdout);
    assertEquals([room.subject, room.policy], ["team.chat", {
      encrypt: true,
      sign: true,
      persist: true,
    }]);
    const shown = JSON.parse((await sh.run(["room", "show", "team.chat", "--json"])).stdout);
    assertEquals(
      shown.members.map((m: { handle: string; role: string }) => `${m.handle}:${m.role}`).sort(),
      ["ada:admin", "bob:member"],
    );

    // bob listens; ada sends one message, then two lines from stdin.
    const listen = await sh.start([
      "listen",
      "team.chat",
      "--json",
      "--count",
      "3",
      "--timeout",
      "45s",
      "--context",
      "bob",
    ]);
    running.push(listen);
    const one = await sh.run(["send", "team.chat", "hello bob"]);
    assertEquals(one.code, 0, one.stderr);
    const lines = await sh.run(["send", "team.chat"], "line one\nline two\n");
    assertEquals(lines.code, 0, lines.stderr);
    const heard = await listen.finished;
    assertEquals(heard.code, 0, heard.stderr);
    const got = heard.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(got.map((m) => m.text), ["hello bob", "line one", "line two"]);
    for (const m of got) {
      assertEquals([m.room, m.subject, m.sender, m.handle], [
        room.id,
        "team.chat",
        keys.ada,
        "ada",
      ]);
      assert(Math.abs(Date.parse(m.time) - Date.now()) < 60_000, `signed time ${m.time}`);
      assertEquals(m.seq, null); // received live
    }

    // bob answers requests with a command; ada asks.
    const respond = await sh.start([
      "respond",
      "team.chat",
      "--exec",
      "tr a-z A-Z",
      "--count",
      "1",
      "--context",
      "bob",
    ]);
    running.push(respond);
    const asked = await sh.run(["request", "team.chat", "ping me", "--json", "--timeout", "10s"]);
    assertEquals(asked.code, 0, asked.stderr);
    assertEquals(JSON.parse(asked.stdout), { text: "PING ME", responder: keys.bob, handle: "bob" });
    assertEquals((await respond.finished).code, 0);

    // The stored messages, read by bob, in order.
    const hist = await sh.run(["history", "team.chat", "--json", "--context", "bob"]);
    assertEquals(hist.code, 0, hist.stderr);
    const stored = hist.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(stored.slice(0, 3).map((m) => m.text), ["hello bob", "line one", "line two"]);
    // Read from the stream: each names its sequence, in order.
    const seqs = stored.map((m) => m.seq as number);
    assert(seqs.every((q, i) => Number.isInteger(q) && (i === 0 || q > seqs[i - 1])), `${seqs}`);

    // --history: the last stored messages first, then live ones, no gap and
    // no duplicate at the seam.
    const seam = await sh.start([
      "listen",
      "team.chat",
      "--json",
      "--history",
      "2",
      "--count",
      "3",
      "--timeout",
      "45s",
      "--context",
      "bob",
    ]);
    running.push(seam);
    assertEquals((await sh.run(["send", "team.chat", "after the seam"])).code, 0);
    const seamOut = await seam.finished;
    assertEquals(seamOut.code, 0, seamOut.stderr);
    const seen = seamOut.stdout.trim().split("\n").map((l) => JSON.parse(l).text);
    assertEquals(seen, [...stored.slice(-2).map((m) => m.text), "after the seam"]);

    // A file through the room's blob store, back byte for byte.
    const file = `${home}/report.bin`;
    const bytes = crypto.getRandomValues(new Uint8Array(50_000));
    await Deno.writeFile(file, bytes);
    const put = await sh.run(["blob", "put", "team.chat", file]);
    assertEquals(put.code, 0, put.stderr);
    const got2 = await sh.run([
      "blob",
      "get",
      "team.chat",
      put.stdout.trim(),
      "--out",
      `${home}/back.bin`,
      "--context",
      "bob",
    ]);
    assertEquals(got2.code, 0, got2.stderr);
    assertEquals(await Deno.readFile(`${home}/back.bin`), bytes);

    // Mistakes: one line, exit 2 for usage, 1 for a failure; no stack trace.
    const usage = await sh.run(["room", "create"]);
    assertEquals(usage.code, 2);
    assertEquals(usage.stderr.trim().split("\n").length, 1, usage.stderr);
    const unknown = await sh.run(["send", "no.such.room", "hi"]);
    assertEquals(unknown.code, 1);
    assertEquals(unknown.stderr.trim().split("\n").length, 1, unknown.stderr);
    assertMatch(unknown.stderr, /^unibus send: /);
    const noContext = await shell(await Deno.makeTempDir({ prefix: "unibus-home-" }), home)
      .run(["room", "ls"]);
    assertEquals(noContext.code, 2);
    assertMatch(noContext.stderr, /context save/);
  } finally {
    for (const r of running) r.kill();
    await Promise.all(running.map((r) => r.finished.catch(() => {})));
    await s.stop();
    await Deno.remove(home, { recursive: true }).catch(() => {});
  }
});
