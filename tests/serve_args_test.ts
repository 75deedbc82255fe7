import { parseServeArgs } from "../cli/serve.ts";
import { UsageError } from "../cli/args.ts";
import { assertEquals, assertThrows } from "./helpers/assert.ts";

Deno.test("serve defaults follow the seeds: 127.0.0.1:8470, NATS 4250, ./local_files, sqlite, auth off", () => {
  const o = parseServeArgs([]);
  assertEquals([o.httpHost, o.httpPort], ["127.0.0.1", 8470]);
  assertEquals([o.natsHost, o.natsPort], ["127.0.0.1", 4250]);
  assertEquals(o.dataDir, "./local_files");
  assertEquals(o.dbPath, "./local_files/unibus.db");
  assertEquals(o.store, "sqlite");
  assertEquals(o.busAuth, "off");
  assertEquals(o.natsUrl, null);
  assertEquals(o.insecurePublic, false);
});

Deno.test("serve flags are applied", () => {
  const o = parseServeArgs([
    "--http-addr",
    "[::1]:9000",
    "--nats-host",
    "localhost",
    "--nats-port=4300",
    "--data-dir",
    "/srv/unibus/",
    "--server-name",
    "node-a",
    "--nats-server-bin",
    "/opt/nats-server",
  ]);
  assertEquals([o.httpHost, o.httpPort, o.natsHost, o.natsPort], ["::1", 9000, "localhost", 4300]);
  assertEquals(o.dbPath, "/srv/unibus/unibus.db");
  assertEquals(o.serverName, "node-a");
  assertEquals(o.natsServerBin, "/opt/nats-server");
  assertEquals(parseServeArgs(["--db", "/x/y.db"]).dbPath, "/x/y.db");
});

Deno.test("a public bind with auth off needs --insecure-public", () => {
  assertThrows(
    () => parseServeArgs(["--http-addr", "0.0.0.0:8470"]),
    UsageError,
    "--insecure-public",
  );
  assertThrows(
    () => parseServeArgs(["--nats-host", "192.0.2.10"]),
    UsageError,
    "--nats-host 192.0.2.10",
  );
  assertThrows(() => parseServeArgs(["--nats-host", "example.org"]), UsageError, "not loopback");
  const o = parseServeArgs(["--http-addr", "0.0.0.0:8470", "--insecure-public"]);
  assertEquals(o.insecurePublic, true);
  // An external NATS is not bound by serve, so --nats-host does not apply.
  parseServeArgs(["--nats-url", "nats://127.0.0.1:4222", "--nats-host", "0.0.0.0"]);
});

Deno.test("malformed serve flags are usage errors naming the flag", () => {
  const cases: Array<[string[], string]> = [
    [["--http-addr", "localhost"], "--http-addr"],
    [["--http-addr", "127.0.0.1:http"], "--http-addr"],
    [["--nats-port", "0"], "--nats-port"],
    [["--nats-port", "-1"], "--nats-port"],
    [["--store", "postgres"], "--store"],
    [["--store", "kv"], "not available yet"],
    [["--bus-auth", "maybe"], "--bus-auth"],
    [["--nats-url", "http://x:1"], "--nats-url"],
    [["--nats-url", "not a url"], "--nats-url"],
    [["--server-name", "bad name"], "--server-name"],
    [["--max-body", "12"], "--max-body"],
    [["--data-dir", ""], "--data-dir"],
    [["--frob"], "unknown option --frob"],
    [["extra"], 'unexpected argument "extra"'],
    [["--insecure-public=yes"], "--insecure-public"],
  ];
  for (const [argv, part] of cases) assertThrows(() => parseServeArgs(argv), UsageError, part);
});
