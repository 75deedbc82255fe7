/**
 * The one-file artifact (`scripts/build` → `dist/unibus`), built once here and
 * run the way an operator runs it after `scp`: from an empty directory with no
 * repository beside it, a fresh HOME, a PATH without nats-server, no network.
 */
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { type Launcher, runUnibus, startServe } from "./helpers/serve_process.ts";
import { freePort } from "./helpers/ports.ts";

const ROOT = new URL("..", import.meta.url).pathname;

let built: Promise<{ dir: string; artifact: string; buildOutput: string }> | null = null;

/** Builds the artifact once per test run, into a temporary directory. */
function buildOnce() {
  built ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "unibus-artifact-" });
    const artifact = `${dir}/unibus`;
    const out = await new Deno.Command("bash", {
      args: [`${ROOT}/scripts/build`, "--out", artifact],
      env: { UNIBUS_BUILD_KIND: "selfextract" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    if (!out.success) throw new Error(`scripts/build failed:\n${text}`);
    return { dir, artifact, buildOutput: text };
  })();
  return built;
}

/** An empty run directory with a private HOME, holding only a copy of the artifact. */
async function freshPlace(): Promise<{ run: string; home: string; launcher: Launcher }> {
  const { artifact } = await buildOnce();
  const place = await Deno.makeTempDir({ prefix: "unibus-scp-" });
  const run = `${place}/run`;
  const home = `${place}/home`;
  await Deno.mkdir(run);
  await Deno.mkdir(home);
  await Deno.copyFile(artifact, `${run}/unibus`);
  await Deno.chmod(`${run}/unibus`, 0o755);
  return {
    run,
    home,
    launcher: { program: `${run}/unibus`, cwd: run, env: { HOME: home, PATH: "/usr/bin:/bin" } },
  };
}

async function removePlace(run: string) {
  await Deno.remove(`${run}/..`, { recursive: true }).catch(() => {});
}

async function cacheEntries(home: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(`${home}/.cache/unibus`)) names.push(e.name);
  } catch { /* no cache yet */ }
  return names.sort();
}

Deno.test("scripts/build says which kind it made, its size and its SHA-256", async () => {
  const { artifact, buildOutput } = await buildOnce();
  assertMatch(buildOutput, /build: kind: self-extracting/);
  const size = (await Deno.stat(artifact)).size;
  assertMatch(buildOutput, new RegExp(`build: size: ${size} bytes`));
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(artifact));
  const hex = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  assertMatch(buildOutput, new RegExp(`build: sha256: ${hex}`));
});

Deno.test("the artifact runs from an empty directory: version, identity, user add, serve, clientcheck", async () => {
  const { run, home, launcher } = await freshPlace();
  try {
    const size = (await Deno.stat(launcher.program)).size;
    let t0 = performance.now();
    const first = await runUnibus(["version"], launcher);
    const firstMs = performance.now() - t0;
    assertEquals(first.code, 0, first.stderr);
    assertMatch(first.stdout, /^unibus \d+\.\d+\.\d+/);
    const entries = await cacheEntries(home);
    assertEquals(entries.length, 1, `one unpacked version, got ${entries}`);
    assertMatch(entries[0], /^\d+\.\d+\.\d+-[0-9a-f]{12}$/);
    const cacheDir = `${home}/.cache/unibus/${entries[0]}`;
    assertEquals((await Deno.stat(cacheDir)).mode! & 0o777, 0o700);
    t0 = performance.now();
    const second = await runUnibus(["version"], launcher);
    const secondMs = performance.now() - t0;
    assertEquals(second.stdout, first.stdout);
    console.log(
      `artifact: ${(size / 1048576).toFixed(1)} MiB; start (version): first run ${
        firstMs.toFixed(0)
      } ms (unpack), second run ${secondMs.toFixed(0)} ms`,
    );

    // Same exit codes as scripts/unibus: usage 2, runtime 1.
    assertEquals((await runUnibus(["no-such-command"], launcher)).code, 2);

    const id = await runUnibus(["identity", "new", "--out", "alice.id", "--handle", "alice"], {
      ...launcher,
    });
    assertEquals(id.code, 0, id.stderr);
    const addLine = id.stdout.split("\n").find((l) => l.trim().startsWith("unibus user add"));
    assert(addLine, id.stdout);
    const addArgs = addLine.trim().split(/\s+/).slice(1);
    const added = await runUnibus([...addArgs, "--role", "admin"], launcher);
    assertEquals(added.code, 0, added.stderr);
    assertEquals((await Deno.stat(`${run}/local_files/unibus.db`)).isFile, true);

    const s = await startServe({
      dataDir: `${run}/local_files`,
      extraArgs: ["--bus-auth", "enforce", "--internal-id-file", "local_files/internal.id"],
      launcher,
    });
    try {
      const started = s.lines.find((l) => l.msg === "starting nats-server");
      assertEquals(started?.source, "embedded", JSON.stringify(started));
      const health = await fetch(`${s.httpUrl}/healthz`);
      assertEquals(health.status, 200);
      assertEquals((await health.json()).status, "ok");
      const cc = await runUnibus([
        "clientcheck",
        "--identity-file",
        "alice.id",
        "--nats-seeds",
        `nats://127.0.0.1:${s.natsPort}`,
        "--ctrl-seeds",
        s.httpUrl,
        "--messages",
        "5",
        "--json",
      ], launcher);
      assertEquals(cc.code, 0, cc.stderr);
      const golden = cc.lines.find((l) => l.event === "golden");
      assertEquals(golden?.ok, true, cc.stdout);
      assertEquals(golden?.received, 5);
    } finally {
      // SIGTERM must reach Deno itself (the header execs it): a clean exit 0.
      const status = await s.stop();
      assertEquals(status.code, 0, s.stderr());
    }
  } finally {
    await removePlace(run);
  }
});

Deno.test("two copies starting at once on an empty cache both run and share one unpacked tree", async () => {
  const { run, home, launcher } = await freshPlace();
  try {
    const [a, b] = await Promise.all([
      runUnibus(["version"], launcher),
      runUnibus(["version"], launcher),
    ]);
    assertEquals([a.code, b.code], [0, 0], a.stderr + b.stderr);
    assertEquals(a.stdout, b.stdout);
    const entries = await cacheEntries(home);
    assertEquals(entries.length, 1, `no temporary directory left behind: ${entries}`);
    assert(!entries[0].startsWith("."), entries[0]);
  } finally {
    await removePlace(run);
  }
});

Deno.test("a cache another local user could write to, or owns, is refused before anything runs", async () => {
  const { run, home, launcher } = await freshPlace();
  const base = `${home}/.cache/unibus`;
  try {
    // A world-writable cache base: named, refused, nothing unpacked.
    await Deno.mkdir(base, { recursive: true });
    await Deno.chmod(base, 0o777);
    let r = await runUnibus(["version"], launcher);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, new RegExp(`^unibus: ${base} is writable by group or others`));
    assertEquals(await cacheEntries(home), []);
    // A group-writable directory on the way to it.
    await Deno.chmod(base, 0o700);
    await Deno.chmod(`${home}/.cache`, 0o775);
    r = await runUnibus(["version"], launcher);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, new RegExp(`^unibus: ${home}/.cache is writable by group or others`));
    await Deno.chmod(`${home}/.cache`, 0o700);
    // Unpacked and run; then an extracted file made writable by others is not executed.
    r = await runUnibus(["version"], launcher);
    assertEquals(r.code, 0, r.stderr);
    const [entry] = await cacheEntries(home);
    await Deno.chmod(`${base}/${entry}/deno`, 0o757);
    r = await runUnibus(["version"], launcher);
    assertEquals(r.code, 1);
    assertMatch(
      r.stderr,
      new RegExp(`^unibus: ${base}/${entry}/deno is writable by group or others`),
    );
    await Deno.chmod(`${base}/${entry}/deno`, 0o700);
    assertEquals((await runUnibus(["version"], launcher)).code, 0);
    if (Deno.uid() !== 0) {
      console.warn(
        "skipped: the cache owned by another user needs root to chown (CI runs as root)",
      );
      return;
    }
    // Owned by another user (nobody): the unpacked tree, then the cache base.
    const nobody = 65534;
    await Deno.chown(`${base}/${entry}`, nobody, null);
    r = await runUnibus(["version"], launcher);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, new RegExp(`^unibus: ${base}/${entry} is not owned by this user`));
    await Deno.chown(base, nobody, null);
    r = await runUnibus(["version"], launcher);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, new RegExp(`^unibus: ${base} is not owned by this user`));
    await Deno.chown(`${home}/.cache`, nobody, null);
    r = await runUnibus(["version"], launcher);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, new RegExp(`^unibus: ${home}/.cache belongs to another user`));
  } finally {
    await removePlace(run);
  }
});

Deno.test("a damaged artifact refuses to unpack and leaves nothing in the cache", async () => {
  const { run, home, launcher } = await freshPlace();
  try {
    const f = await Deno.open(launcher.program, { read: true, write: true });
    try {
      const size = (await f.stat()).size;
      await f.seek(size - 1000, Deno.SeekMode.Start);
      const b = new Uint8Array(1);
      await f.read(b);
      await f.seek(size - 1000, Deno.SeekMode.Start);
      await f.write(new Uint8Array([b[0] ^ 0xff]));
    } finally {
      f.close();
    }
    const r = await runUnibus(["version"], launcher);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, /^unibus: payload checksum mismatch .*damaged or was altered/);
    assertEquals(await cacheEntries(home), []);
  } finally {
    await removePlace(run);
  }
});

Deno.test("serve refuses an embedded nats-server altered in the unpacked cache", async () => {
  const { run, home, launcher } = await freshPlace();
  try {
    assertEquals((await runUnibus(["version"], launcher)).code, 0);
    const [entry] = await cacheEntries(home);
    const nats = `${home}/.cache/unibus/${entry}/app/.embedded/nats-server`;
    const f = await Deno.open(nats, { append: true });
    await f.write(new Uint8Array([0]));
    f.close();
    const r = await runUnibus([
      "serve",
      "--data-dir",
      `${run}/local_files`,
      "--http-addr",
      "127.0.0.1:0",
      "--nats-port",
      String(freePort()),
    ], launcher);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, /embedded nats-server .* does not match its pinned SHA-256/);
  } finally {
    await removePlace(run);
  }
});

Deno.test({
  name: "artifact build directory is removed",
  // Runs last (file order): the artifact is no longer needed.
  async fn() {
    if (built) await Deno.remove((await built).dir, { recursive: true });
  },
});
