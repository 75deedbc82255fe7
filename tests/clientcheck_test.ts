import { generateIdentity, saveIdentity } from "../lib/identity/identity.ts";
import { openSqliteStore } from "../lib/store/sqlite.ts";
import { parseClientcheckArgs, parseDuration } from "../cli/clientcheck.ts";
import { UsageError } from "../cli/args.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "./helpers/assert.ts";
import { type ServeUnderTest, spawnUnibus, startServe } from "./helpers/serve_process.ts";

async function operatorIdentity(s: ServeUnderTest, dir: string, allowlisted = true) {
  const id = generateIdentity("operator");
  const file = `${dir}/operator.id`;
  await saveIdentity(file, id);
  if (allowlisted) {
    const store = await openSqliteStore(`${s.dataDir}/unibus.db`);
    await store.addUser({
      signPub: id.signPubHex,
      handle: "operator",
      role: "admin",
      kexPub: id.kexPubHex,
      kexSig: id.kexSigHex,
    });
    await store.close();
  }
  return file;
}

/** The required flags, for tests of the parser alone. */
const PARSE_BASE = [
  "--identity-file",
  "a.id",
  "--nats-seeds",
  "nats://h:4250",
  "--ctrl-seeds",
  "http://h:8470",
];

function clientcheck(s: ServeUnderTest, idFile: string, extra: string[]) {
  return spawnUnibus([
    "clientcheck",
    "--identity-file",
    idFile,
    "--nats-seeds",
    `nats://127.0.0.1:${s.natsPort}`,
    "--ctrl-seeds",
    s.httpUrl,
    ...extra,
  ]);
}

Deno.test("clientcheck golden passes against a single node and leaves no room behind", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-cc-" });
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce"] });
  try {
    const idFile = await operatorIdentity(s, dir);
    const p = clientcheck(s, idFile, ["--messages", "20", "--json"]);
    const status = await p.finished;
    assertEquals(status.code, 0, p.stderr());
    const summary = p.lines.find((l) => l.event === "golden")!;
    assertEquals(summary.ok, true);
    assertEquals(summary.received, 20);
    assertEquals(summary.missing, []);
    const store = await openSqliteStore(`${s.dataDir}/unibus.db`);
    try {
      const rooms = await store.listRoomsForMember((await store.listUsers())[0].signPub);
      assertEquals(rooms.length, 0, "the ephemeral room was deleted");
    } finally {
      await store.close();
    }
  } finally {
    await s.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("clientcheck loop reports ticks, the attached node and a summary", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-cc-" });
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce"] });
  try {
    const idFile = await operatorIdentity(s, dir);
    const p = clientcheck(s, idFile, ["--mode", "loop", "--duration", "1s", "--interval", "100ms"]);
    const status = await p.finished;
    assertEquals(status.code, 0, p.stderr());
    const text = p.lines.map((l) => l.raw ?? JSON.stringify(l)).join("\n");
    assertMatch(
      text,
      new RegExp(`t=1 sent=1 recv=\\d+ up=true node=127\\.0\\.0\\.1:${s.natsPort}`),
    );
    assertMatch(text, /LOOP OK/);
    assertMatch(text, /lost=0 duplicates=0 max_gap_ms=\d+/);
    assert(!text.includes("FAILOVER OBSERVED"), "one node, no failover");
  } finally {
    await s.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("clientcheck loop --persist --json: the last line is the summary, lost counted from history", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-cc-" });
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce"] });
  try {
    const idFile = await operatorIdentity(s, dir);
    const p = clientcheck(s, idFile, [
      "--mode",
      "loop",
      "--duration",
      "1s",
      "--interval",
      "100ms",
      "--persist",
      "--json",
    ]);
    const status = await p.finished;
    assertEquals(status.code, 0, p.stderr());
    const last = p.lines.at(-1)!;
    assertEquals(last.event, "summary");
    assert((last.sent as number) >= 5, `sent ${last.sent}`);
    assertEquals(last.received, last.sent);
    assertEquals([last.lost, last.duplicates, last.history_checked], [0, 0, true]);
    assertEquals(last.nodes, [`127.0.0.1:${s.natsPort}`]);
    assert(typeof last.max_gap_ms === "number" && last.max_gap_ms < 1000, `gap ${last.max_gap_ms}`);
  } finally {
    await s.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the loop tally counts lost, duplicates and the longest gap", async () => {
  const { LoopTally } = await import("../cli/clientcheck.ts");
  const t = new LoopTally(1000);
  t.delivered("clientcheck-loop-0", 1100);
  t.delivered("clientcheck-loop-0", 1150);
  t.delivered("clientcheck-loop-2", 1900);
  t.delivered("something else", 1950);
  assertEquals(t.summary(4, 2000), {
    sent: 4,
    received: 2,
    lost: 2,
    duplicates: 1,
    max_gap_ms: 800,
  });
  assertEquals(t.missing(4), [1, 3]);
});

Deno.test("clientcheck refuses a subject outside the grammar before it connects", async () => {
  // Nothing listens on these ports: the refusal must come before any I/O.
  for (
    const [subject, rule] of [
      ["_INBOX.probe", "reserved_prefix"],
      ["chat.\u2603", "not_ascii"],
      ["chat.ops\u001bx", "control_character"],
      ["chat.*", "wildcard"],
      ["x".repeat(239), "too_long"],
    ]
  ) {
    const p = spawnUnibus([
      "clientcheck",
      "--identity-file",
      "/nonexistent/operator.id",
      "--nats-seeds",
      "nats://127.0.0.1:9",
      "--ctrl-seeds",
      "http://127.0.0.1:9",
      "--subject",
      subject,
    ]);
    const status = await p.finished;
    const err = p.stderr().trim();
    assertEquals(status.code, 2, err);
    assertEquals(err.split("\n").length, 1, err);
    assertMatch(err, new RegExp(`--subject .*\\(rule ${rule}\\)`));
  }
  const base = PARSE_BASE;
  // A NUL cannot travel in argv; the parser refuses it all the same.
  assertThrows(
    () => parseClientcheckArgs([...base, "--subject", "chat.ops\u0000x"]),
    UsageError,
    "rule control_character",
  );
  // The longest prefix that still leaves room for the appended token passes.
  assertEquals(parseClientcheckArgs([...base, "--subject", "x".repeat(238)]).subject.length, 238);
});

Deno.test("clientcheck with an identity that is not on the allowlist fails clearly", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-cc-" });
  const s = await startServe({ extraArgs: ["--bus-auth", "enforce"] });
  try {
    const idFile = await operatorIdentity(s, dir, false);
    const p = clientcheck(s, idFile, []);
    assertEquals((await p.finished).code, 1);
    assertMatch(p.stderr(), /401 unknown_key/);
  } finally {
    await s.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("clientcheck flag mistakes are usage errors", () => {
  const base = PARSE_BASE;
  parseClientcheckArgs(base);
  assertThrows(
    () => parseClientcheckArgs(base.slice(2)),
    UsageError,
    "--identity-file is required",
  );
  assertThrows(() => parseClientcheckArgs([...base, "--mode", "soak"]), UsageError, "--mode");
  assertThrows(
    () => parseClientcheckArgs([...base, "--ca", "ca.pem"]),
    UsageError,
    "must be https://",
  );
  assertThrows(() => parseClientcheckArgs([...base, "--messages", "0"]), UsageError, "--messages");
  assertThrows(
    () => parseClientcheckArgs([...base, "--duration", "soon"]),
    UsageError,
    "--duration",
  );
  assertThrows(
    () =>
      parseClientcheckArgs([
        "--identity-file",
        "a",
        "--nats-seeds",
        "http://x",
        "--ctrl-seeds",
        "http://h",
      ]),
    UsageError,
    "--nats-seeds",
  );
  assertEquals([
    parseDuration("250ms"),
    parseDuration("2s"),
    parseDuration("1m"),
    parseDuration("3"),
  ], [
    250,
    2000,
    60_000,
    3000,
  ]);
});
