import { NatsConfigError, type NatsConfigInput, renderNatsConfig } from "../server/nats/config.ts";
import { resolveNatsServerBin } from "../server/nats/binary.ts";
import { assert, assertMatch, assertThrows } from "./helpers/assert.ts";

const base: NatsConfigInput = {
  serverName: "unibus-test",
  host: "127.0.0.1",
  port: 4250,
  jetStreamDir: "/var/lib/unibus/jetstream",
  pidFile: "/var/lib/unibus/nats-server.pid",
  debug: false,
  trace: false,
  monitorPort: null,
  auth: { mode: "off" },
  tls: null,
};

Deno.test("the config names the server, the listener, the pid file and the JetStream store", () => {
  const text = renderNatsConfig(base);
  assertMatch(text, /^server_name: "unibus-test"$/m);
  assertMatch(text, /^host: "127.0.0.1"$/m);
  assertMatch(text, /^port: 4250$/m);
  assertMatch(text, /^pid_file: "\/var\/lib\/unibus\/nats-server.pid"$/m);
  assertMatch(text, /jetstream \{\n {2}store_dir: "\/var\/lib\/unibus\/jetstream"\n\}/);
  assertMatch(text, /^debug: false$/m);
});

Deno.test("JetStream's max store is written when given and must be a positive byte count", () => {
  assert(!renderNatsConfig(base).includes("max_file_store"));
  const text = renderNatsConfig({ ...base, maxFileStore: 268435456 });
  assertMatch(text, /jetstream \{\n {2}store_dir: "[^"]+"\n {2}max_file_store: 268435456\n\}/);
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    assertThrows(() => renderNatsConfig({ ...base, maxFileStore: bad }), NatsConfigError);
  }
});

Deno.test("the subscription limit per connection is written when given and must be a positive count", () => {
  assert(!renderNatsConfig(base).includes("max_subscriptions"));
  assertMatch(renderNatsConfig({ ...base, maxSubscriptions: 4096 }), /^max_subscriptions: 4096$/m);
  for (const bad of [0, -1, 1.5, 2 ** 31]) {
    assertThrows(() => renderNatsConfig({ ...base, maxSubscriptions: bad }), NatsConfigError);
  }
});

Deno.test("the monitoring endpoint is absent unless asked for, and then loopback only", () => {
  assert(!renderNatsConfig(base).includes("http:"));
  const open = renderNatsConfig({ ...base, host: "0.0.0.0", monitorPort: 8222 });
  assertMatch(open, /^http: "127.0.0.1:8222"$/m);
});

Deno.test("debug and trace follow the options", () => {
  const text = renderNatsConfig({ ...base, debug: true, trace: true });
  assertMatch(text, /^debug: true$/m);
  assertMatch(text, /^trace: true$/m);
});

Deno.test("values that could break out of a quoted string are refused", () => {
  assertThrows(
    () => renderNatsConfig({ ...base, jetStreamDir: '/tmp/x"\nport: 1' }),
    NatsConfigError,
  );
  assertThrows(() => renderNatsConfig({ ...base, pidFile: "/tmp/$HOME" }), NatsConfigError);
  assertThrows(() => renderNatsConfig({ ...base, serverName: "a b" }), NatsConfigError);
  assertThrows(() => renderNatsConfig({ ...base, port: 70000 }), NatsConfigError);
});

Deno.test("nats-server itself accepts the generated config (nats-server -t)", async () => {
  const bin = (await resolveNatsServerBin({ env: Deno.env.toObject() })).path;
  const dir = await Deno.makeTempDir({ prefix: "unibus-conf-" });
  try {
    const variants = [
      base,
      { ...base, debug: true, trace: true, monitorPort: 8222, maxFileStore: 268435456 },
      { ...base, lameDuck: { durationS: 30, graceS: 1 } },
    ];
    for (const variant of variants) {
      const path = `${dir}/nats.conf`;
      await Deno.writeTextFile(
        path,
        renderNatsConfig({ ...variant, jetStreamDir: `${dir}/js`, pidFile: `${dir}/pid` }),
      );
      const out = await new Deno.Command(bin, { args: ["-t", "-c", path] }).output();
      const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
      assert(out.code === 0, `nats-server -t rejected the config: ${text}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("JetStream's sync interval is written as always or a duration, and refused when not positive", () => {
  assertMatch(
    renderNatsConfig({ ...base, syncInterval: "always" }),
    /^ {2}sync_interval: always$/m,
  );
  assertMatch(
    renderNatsConfig({ ...base, syncInterval: 120_000 }),
    /^ {2}sync_interval: "120000ms"$/m,
  );
  assert(!renderNatsConfig(base).includes("sync_interval"));
  assertThrows(() => renderNatsConfig({ ...base, syncInterval: 0 }), NatsConfigError);
});

Deno.test("lame duck: duration and grace are written when given, and what nats-server 2.10 would refuse is refused here", () => {
  assert(!renderNatsConfig(base).includes("lame_duck"));
  const text = renderNatsConfig({ ...base, lameDuck: { durationS: 45, graceS: 5 } });
  assertMatch(text, /^lame_duck_duration: "45s"$/m);
  assertMatch(text, /^lame_duck_grace_period: "5s"$/m);
  for (
    const bad of [
      { durationS: 29, graceS: 1 }, // below nats-server's minimum of 30 s
      { durationS: 30, graceS: 30 }, // grace must be strictly below the duration
      { durationS: 30, graceS: 0 }, // 0 would mean nats-server's default 10 s
      { durationS: 30.5, graceS: 1 },
    ]
  ) {
    assertThrows(() => renderNatsConfig({ ...base, lameDuck: bad }), NatsConfigError, "lame duck");
  }
});
