/**
 * The client on Node.js: `scripts/build-npm` compiles lib/client into
 * dist/npm/, a temporary Node project installs it (its dependencies from the
 * npm registry), and, against one real serve in enforce mode with TLS on
 * both planes pinned to the test CA: the two-agents example runs under
 * Node, and a Node client and a Deno client talk both ways in one room.
 */

import { connect, type UnibusClient } from "../lib/client/client.ts";
import { saveIdentity } from "../lib/identity/identity.ts";
import { openSqliteStore } from "../lib/store/sqlite.ts";
import { assertEquals, assertMatch } from "./helpers/assert.ts";
import { addBusUser } from "./helpers/bus.ts";
import { startServe } from "./helpers/serve_process.ts";
import { makeTestPki, tlsEnforceArgs } from "./helpers/tls.ts";
import { waitFor } from "./helpers/wait.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const dec = new TextDecoder();

async function run(cmd: string, args: string[], cwd: string) {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const text = dec.decode(out.stdout) + dec.decode(out.stderr);
  assertEquals(out.code, 0, `${cmd} ${args.join(" ")}:\n${text}`);
  return text;
}

/** A Node program: answers each message of `ada` in the room with "node got: …", once. */
const ECHO = `
import { connect, loadIdentity } from "@unibus/client";
const [idFile, nats, ctrl, ca, subject, peer] = process.argv.slice(2);
const c = await connect({ natsServers: [nats], ctrlUrls: [ctrl], identity: await loadIdentity(idFile), tls: { caFile: ca } });
let answered;
const done = new Promise((r) => (answered = r));
await c.subscribe(subject, async (meta, data) => {
  if (meta.sender !== peer) return;
  await c.publish(subject, "node got: " + new TextDecoder().decode(data));
  await c.flush();
  answered();
});
console.log("ready");
await done;
await c.close();
`;

Deno.test("the npm build runs under Node.js: the two-agents example over pinned TLS, and Node and Deno clients both ways", async () => {
  await run("bash", [`${ROOT}scripts/build-npm`], ROOT);
  const project = await Deno.makeTempDir({ prefix: "unibus-node-" });
  const pki = await makeTestPki();
  const s = await startServe({ extraArgs: tlsEnforceArgs(pki) });
  const store = await openSqliteStore(`${s.dataDir}/unibus.db`);
  let ada: UnibusClient | null = null;
  let echo: Deno.ChildProcess | null = null;
  try {
    await Deno.writeTextFile(
      `${project}/package.json`,
      JSON.stringify({ name: "t", private: true, type: "module" }),
    );
    // --install-links: a copy, as from the registry, so its dependencies
    // resolve from this project and not from the repository.
    await run("npm", [
      "install",
      "--no-audit",
      "--no-fund",
      "--loglevel=error",
      "--install-links",
      `${ROOT}dist/npm`,
    ], project);
    await Deno.copyFile(
      `${ROOT}clients/node/examples/two_agents.mjs`,
      `${project}/two_agents.mjs`,
    );
    await Deno.writeTextFile(`${project}/echo.mjs`, ECHO);
    const ids: Record<string, string> = {};
    const users: Record<string, Awaited<ReturnType<typeof addBusUser>>> = {};
    for (const name of ["scout", "planner", "ada", "nodie"]) {
      users[name] = await addBusUser(store, name, name === "ada" ? "admin" : "member");
      ids[name] = `${project}/${name}.id`;
      await saveIdentity(ids[name], users[name].identity);
    }
    const nats = `tls://127.0.0.1:${s.natsPort}`;
    const ctrl = `https://127.0.0.1:${s.httpPort}`;

    // The example, as a Node user runs it.
    const example = await run(
      "node",
      ["two_agents.mjs", ids.scout, ids.planner, nats, ctrl, pki.caCert],
      project,
    );
    assertMatch(example, /scout {3}<- map the north ridge/);
    assertMatch(example, /planner <- done: map the north ridge/);

    // Deno → Node → Deno in one encrypted room.
    ada = await connect({
      natsServers: [nats],
      ctrlUrls: [ctrl],
      identity: users.ada.identity,
      tls: { caFile: pki.caCert },
    });
    const subject = "node.and.deno";
    await ada.createRoom(subject, { encrypt: true, sign: true, persist: false }, {
      members: [users.nodie.hex],
    });
    const got: Array<{ sender: string; text: string }> = [];
    await ada.subscribe(
      subject,
      (meta, data) => got.push({ sender: meta.sender, text: dec.decode(data) }),
    );
    echo = new Deno.Command("node", {
      args: ["echo.mjs", ids.nodie, nats, ctrl, pki.caCert, subject, users.ada.hex],
      cwd: project,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stdout = echo.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const first = await stdout.read();
    assertEquals(first.value?.trim(), "ready");
    await ada.publish(subject, "hello from deno");
    await waitFor(() => got.find((m) => m.sender === users.nodie.hex), {
      what: "the Node client's answer",
      timeoutMs: 15_000,
    });
    assertEquals(got.filter((m) => m.sender === users.nodie.hex).map((m) => m.text), [
      "node got: hello from deno",
    ]);
    stdout.releaseLock();
    const status = await echo.status;
    echo = null;
    assertEquals(status.code, 0);
  } finally {
    try {
      echo?.kill("SIGKILL");
    } catch { /* ended */ }
    await ada?.close();
    store.close();
    await s.stop();
    await pki.cleanup().catch(() => {});
    await Deno.remove(project, { recursive: true }).catch(() => {});
  }
});
