import { parseByteSize, parseServeArgs } from "../cli/serve.ts";
import { DEFAULT_LIMITS } from "../server/limits.ts";
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

Deno.test("serve --store kv takes its replicas and bootstrap budget (defaults R1, 120 s)", () => {
  const d = parseServeArgs(["--store", "kv"]);
  assertEquals([d.store, d.kvReplicas, d.kvBootstrapTimeoutMs], ["kv", 1, 120_000]);
  const o = parseServeArgs(["--store", "kv", "--kv-replicas", "3", "--kv-bootstrap-timeout", "30"]);
  assertEquals([o.store, o.kvReplicas, o.kvBootstrapTimeoutMs], ["kv", 3, 30_000]);
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

Deno.test("limit flags default to DEFAULT_LIMITS and take counts and byte sizes", () => {
  assertEquals(parseServeArgs([]).limits, DEFAULT_LIMITS);
  assertEquals(DEFAULT_LIMITS.roomStreamMaxBytes, 64 * 1024 * 1024);
  const o = parseServeArgs([
    "--max-rooms-per-user=5",
    "--max-persisted-rooms-per-user=2",
    "--max-blobs-per-user=7",
    "--max-blob-bytes-per-user=1GiB",
    "--room-stream-max-bytes=16MiB",
    "--jetstream-max-store=10GiB",
    "--max-uploads-per-user=1",
    "--max-uploads=4",
    "--max-connections-per-user=3",
    "--max-subscriptions-per-connection=64",
  ]);
  assertEquals(o.limits, {
    roomsPerUser: 5,
    persistedRoomsPerUser: 2,
    blobsPerUser: 7,
    blobBytesPerUser: 1024 ** 3,
    roomStreamMaxBytes: 16 * 1024 * 1024,
    jetStreamMaxStore: 10 * 1024 ** 3,
    uploadsPerUser: 1,
    uploadsPerSource: 4,
    uploadsTotal: 4,
    connectionsPerUser: 3,
    subscriptionsPerConnection: 64,
  });
  // Left at its default, the per-source bound follows a smaller --max-uploads.
  assertEquals(
    parseServeArgs(["--max-uploads=3", "--max-uploads-per-user=1"]).limits.uploadsPerSource,
    3,
  );
  assertEquals(parseServeArgs(["--max-uploads-per-source=6"]).limits.uploadsPerSource, 6);
  assertEquals(parseByteSize("1048576"), 1048576);
  assertEquals(parseByteSize("3KiB"), 3072);
  assertEquals(parseByteSize("2TiB"), 2 * 1024 ** 4);
  for (const bad of ["", "1.5MiB", "1MB", "-1", "1 MiB", "9".repeat(16)]) {
    assertThrows(() => parseByteSize(bad), Error, "not a byte count");
  }
});

Deno.test("--max-body takes the byte sizes of the other limit flags, up to the blob limit", () => {
  assertEquals(parseServeArgs([]).maxBodyBytes, 1024 * 1024);
  assertEquals(parseServeArgs(["--max-body", "2MiB"]).maxBodyBytes, 2 * 1024 * 1024);
  assertEquals(parseServeArgs(["--max-body=64KiB"]).maxBodyBytes, 64 * 1024);
  assertEquals(parseServeArgs(["--max-body", "1024"]).maxBodyBytes, 1024);
  assertEquals(parseServeArgs(["--max-body", "8MiB"]).maxBodyBytes, 8 * 1024 * 1024);
});

Deno.test("malformed serve flags are usage errors naming the flag", () => {
  const cases: Array<[string[], string]> = [
    [["--http-addr", "localhost"], "--http-addr"],
    [["--http-addr", "127.0.0.1:http"], "--http-addr"],
    [["--nats-port", "0"], "--nats-port"],
    [["--nats-port", "-1"], "--nats-port"],
    [["--store", "postgres"], "--store"],
    [["--store", "kv", "--kv-replicas", "2"], "--kv-replicas"],
    [["--store", "kv", "--kv-bootstrap-timeout", "0"], "--kv-bootstrap-timeout"],
    [["--store", "kv", "--kv-bootstrap-timeout", "2m"], "--kv-bootstrap-timeout"],
    [["--kv-replicas", "3"], "need --store kv"],
    [["--bus-auth", "maybe"], "--bus-auth"],
    [["--bus-auth"], "--bus-auth needs a value"],
    [["--nats-url", "http://x:1"], "--nats-url"],
    [["--nats-url", "not a url"], "--nats-url"],
    [["--server-name", "bad name"], "--server-name"],
    [["--max-body", "12"], "--max-body"],
    [["--data-dir", ""], "--data-dir"],
    [["--frob"], "unknown option --frob"],
    [["extra"], 'unexpected argument "extra"'],
    [["--insecure-public=yes"], "--insecure-public"],
    [["--max-rooms-per-user", "0"], "--max-rooms-per-user: must be at least 1"],
    [["--max-blobs-per-user", "lots"], "--max-blobs-per-user"],
    [["--max-blob-bytes-per-user", "1MB"], "--max-blob-bytes-per-user"],
    [["--jetstream-max-store", "1MiB"], "--jetstream-max-store: must be at least"],
    [["--room-stream-max-bytes", "512KiB"], "--room-stream-max-bytes: must be at least 1MiB"],
    [["--room-stream-max-bytes", "64MB"], "--room-stream-max-bytes"],
    [
      ["--jetstream-max-store", "1GiB", "--room-stream-max-bytes", "2GiB"],
      "must not exceed --jetstream-max-store",
    ],
    [["--max-uploads-per-user", "9", "--max-uploads", "4"], "--max-uploads-per-user"],
    [["--max-uploads-per-source", "20"], "--max-uploads-per-source: must not exceed --max-uploads"],
    [["--max-uploads-per-user", "3", "--max-uploads-per-source", "2"], "--max-uploads-per-user"],
    [["--max-body", "1MB"], "--max-body"],
    [["--max-body", "1023"], "--max-body: must be between 1KiB and 8MiB"],
    [["--max-body", "9MiB"], "--max-body: must be between 1KiB and 8MiB"],
    [["--max-body", "1GiB"], "--max-body: must be between 1KiB and 8MiB"],
  ];
  for (const [argv, part] of cases) assertThrows(() => parseServeArgs(argv), UsageError, part);
});

Deno.test("enforce mode on a public bind requires TLS, with or without --insecure-public", () => {
  assertThrows(
    () => parseServeArgs(["--bus-auth", "enforce", "--http-addr", "0.0.0.0:8470"]),
    UsageError,
    "needs --tls-cert",
  );
  assertThrows(
    () => parseServeArgs(["--bus-auth", "enforce", "--nats-host", "0.0.0.0", "--insecure-public"]),
    UsageError,
    "needs --tls-cert",
  );
  const o = parseServeArgs([
    "--bus-auth",
    "enforce",
    "--http-addr",
    "0.0.0.0:8470",
    "--tls-cert",
    "c.pem",
    "--tls-key",
    "k.pem",
    "--tls-ca",
    "ca.pem",
  ]);
  assertEquals(o.tls, { certFile: "c.pem", keyFile: "k.pem", caFile: "ca.pem" });
  assertEquals(o.busAuth, "enforce");
});

Deno.test("TLS flags must come as a set, and enforce needs the managed nats-server", () => {
  assertThrows(() => parseServeArgs(["--tls-cert", "c.pem"]), UsageError, "go together");
  assertThrows(() => parseServeArgs(["--tls-cert", "c", "--tls-key", "k"]), UsageError, "--tls-ca");
  assertThrows(() => parseServeArgs(["--tls-ca", "ca.pem"]), UsageError, "nothing to pin");
  assertThrows(
    () => parseServeArgs(["--bus-auth", "enforce", "--nats-url", "nats://127.0.0.1:4222"]),
    UsageError,
    "managed nats-server",
  );
  assertEquals(parseServeArgs(["--internal-id-file", "/x/id.json"]).internalIdFile, "/x/id.json");
});

Deno.test("--jetstream-sync: always by default, a duration, or a usage error", () => {
  assertEquals(parseServeArgs([]).jetstreamSync, "always");
  assertEquals(parseServeArgs(["--jetstream-sync", "2m"]).jetstreamSync, 120_000);
  assertEquals(parseServeArgs(["--jetstream-sync", "500ms"]).jetstreamSync, 500);
  for (const bad of ["0s", "5x", "-1s", "25h", ""]) {
    assertThrows(() => parseServeArgs(["--jetstream-sync", bad]), UsageError, "--jetstream-sync");
  }
});
