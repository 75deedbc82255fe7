import { UsageError } from "../cli/args.ts";
import { parseServeArgs } from "../cli/serve.ts";
import { parseClusterArgs } from "../cli/serve_cluster.ts";
import { assertSeparateRouteCa, RouteCaError } from "../server/cluster/route_tls.ts";
import {
  loadOrCreateCalloutIssuer,
  resolveClusterPass,
  SecretFileError,
} from "../server/cluster/secrets.ts";
import { resolveNatsServerBin } from "../server/nats/binary.ts";
import {
  type NatsConfigInput,
  redactRoute,
  renderNatsConfig,
  routeWithCredentials,
} from "../server/nats/config.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
} from "./helpers/assert.ts";
import { makeRoutePki, makeTestPki } from "./helpers/tls.ts";

const PASS = "0123456789abcdef-route";

const base: NatsConfigInput = {
  serverName: "n1",
  host: "127.0.0.1",
  port: 4250,
  jetStreamDir: "/var/lib/unibus/jetstream",
  pidFile: "/var/lib/unibus/nats-server.pid",
  debug: false,
  trace: false,
  monitorPort: null,
  auth: { mode: "off" },
  tls: null,
  cluster: {
    name: "unibus",
    host: "127.0.0.1",
    port: 6250,
    routes: ["nats://127.0.0.1:6251", "nats://other:given-secret-xxxx@127.0.0.1:6252"],
    user: "unibus-cluster",
    pass: PASS,
    tls: null,
  },
};

Deno.test("the cluster block: one route per peer, nothing advertised, secret injected into bare routes only", () => {
  const text = renderNatsConfig(base);
  assertMatch(text, /^cluster \{$/m);
  assertMatch(text, /^ {2}name: "unibus"$/m);
  assertMatch(text, /^ {2}port: 6250$/m);
  assertMatch(text, /^ {2}pool_size: -1$/m);
  assertMatch(text, /^ {2}no_advertise: true$/m);
  assertMatch(text, new RegExp(`password: "${PASS}"`));
  assertMatch(text, new RegExp(`"nats://unibus-cluster:${PASS}@127.0.0.1:6251"`));
  // A route with its own userinfo is the operator's choice: kept as given.
  assertMatch(text, /"nats:\/\/other:given-secret-xxxx@127.0.0.1:6252"/);
  assert(!text.includes("tls {"), "no route TLS block without route TLS");
  assert(!renderNatsConfig({ ...base, cluster: null }).includes("cluster {"));
});

Deno.test("route TLS is mutual: cert, key, the route CA and verify", () => {
  const text = renderNatsConfig({
    ...base,
    cluster: {
      ...base.cluster!,
      tls: { certFile: "/r/n1.crt", keyFile: "/r/n1.key", caFile: "/r/ca.crt" },
    },
  });
  assertMatch(
    text,
    / {2}tls \{\n {4}cert_file: "\/r\/n1.crt"\n {4}key_file: "\/r\/n1.key"\n {4}ca_file: "\/r\/ca.crt"\n {4}verify: true\n/,
  );
});

Deno.test("route credentials: bare URLs get them (encoded), redaction hides them", () => {
  assertEquals(
    routeWithCredentials("nats://10.0.0.2:6250", "u", "p@ss/word-0123456"),
    "nats://u:p%40ss%2Fword-0123456@10.0.0.2:6250",
  );
  assertEquals(routeWithCredentials("nats://a:b@h:1", "u", "p"), "nats://a:b@h:1");
  assertEquals(redactRoute("nats://u:secret@10.0.0.2:6250"), "nats://***@10.0.0.2:6250");
});

Deno.test("nats-server -t accepts the clustered config, with and without route TLS", async () => {
  const bin = (await resolveNatsServerBin({ env: Deno.env.toObject() })).path;
  const routes = await makeRoutePki(1);
  const dir = await Deno.makeTempDir({ prefix: "unibus-conf-" });
  try {
    const tls = {
      certFile: routes.nodes[0].cert,
      keyFile: routes.nodes[0].key,
      caFile: routes.caCert,
    };
    for (const cluster of [base.cluster!, { ...base.cluster!, tls }]) {
      const path = `${dir}/nats.conf`;
      await Deno.writeTextFile(
        path,
        renderNatsConfig({
          ...base,
          jetStreamDir: `${dir}/js`,
          pidFile: `${dir}/pid`,
          monitorPort: 18222,
          cluster,
        }),
      );
      const out = await new Deno.Command(bin, { args: ["-t", "-c", path] }).output();
      const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
      assert(out.code === 0, `nats-server -t rejected the config: ${text}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
    await routes.cleanup();
  }
});

const CLUSTER = [
  "--bus-auth",
  "enforce",
  "--store",
  "kv",
  "--routes",
  "nats://127.0.0.1:6251,nats://127.0.0.1:6252",
  "--callout-issuer-file",
  "/tmp/issuer.nk",
];

function refusal(argv: string[], env: Record<string, string> = {}): string {
  try {
    parseServeArgs(argv, env);
  } catch (err) {
    assert(err instanceof UsageError, `expected a UsageError, got ${err}`);
    return err.message;
  }
  throw new Error(`accepted: ${argv.join(" ")}`);
}

Deno.test("a clustered node refuses to start without enforce, with sqlite, or without a shared issuer", () => {
  const pass = ["--cluster-pass-file", "/tmp/p"];
  assertMatch(
    refusal(["--store", "kv", "--routes", "nats://127.0.0.1:6251", ...pass]),
    /clustered node needs --bus-auth enforce/,
  );
  assertMatch(
    refusal(["--bus-auth", "enforce", "--routes", "nats://127.0.0.1:6251", ...pass]),
    /clustered node needs --store kv/,
  );
  assertMatch(
    refusal(["--bus-auth", "enforce", "--store", "kv", "--cluster-port", "6250", ...pass]),
    /needs --callout-issuer-file/,
  );
  // Cluster-only flags without a cluster are a mistake, not silently ignored.
  assertMatch(refusal(["--cluster-pass-file", "/tmp/p"]), /--cluster-pass-file needs a cluster/);
  assertMatch(refusal(["--callout-issuer-file", "/tmp/i"]), /needs --bus-auth enforce/);
});

Deno.test("the route secret: needed, file > env > flag, checked without being echoed", () => {
  assertMatch(refusal([...CLUSTER]), /needs a route secret/);
  const short = refusal([...CLUSTER, "--cluster-pass", "tooshort"]);
  assertMatch(short, /at least 16 characters/);
  assert(!short.includes("tooshort"), "the error must not quote the secret");
  assertMatch(
    refusal([...CLUSTER], { UNIBUS_CLUSTER_PASS: 'has"quote-0123456789' }),
    /UNIBUS_CLUSTER_PASS/,
  );
  // Parsing stops before a file is read: it is read at start (secrets.ts).
  // (parseClusterArgs: a whole clustered serve parses only once --store kv exists.)
  const routes = { routes: "nats://127.0.0.1:6251" };
  assertEquals(
    parseClusterArgs(
      { ...routes, "cluster-pass-file": "/etc/p", "cluster-pass": PASS },
      { UNIBUS_CLUSTER_PASS: `${PASS}-env` },
    )?.pass,
    { kind: "file", path: "/etc/p" },
  );
  assertEquals(
    parseClusterArgs({ ...routes, "cluster-pass": PASS }, { UNIBUS_CLUSTER_PASS: `${PASS}-env` })
      ?.pass,
    { kind: "env", value: `${PASS}-env` },
  );
  assertEquals(parseClusterArgs({ ...routes, "cluster-pass": PASS }, {})?.pass, {
    kind: "flag",
    value: PASS,
  });
});

Deno.test("cluster flags: defaults, values, and a route with a secret is never echoed", () => {
  const o = parseClusterArgs({
    routes: "nats://127.0.0.1:6251, nats://127.0.0.1:6252",
    "cluster-pass-file": "/etc/p",
  }, {});
  assertEquals(o?.name, "unibus");
  assertEquals(o?.port, 6250);
  assertEquals(o?.host, "127.0.0.1");
  assertEquals(o?.user, "unibus-cluster");
  assertEquals(o?.routes, ["nats://127.0.0.1:6251", "nats://127.0.0.1:6252"]);
  assertEquals(o?.routeTls, null);
  assertEquals(parseServeArgs(["--nats-monitor-port", "9222"]).natsMonitorPort, 9222);
  assertEquals(parseServeArgs([]).natsMonitorPort, null);
  assertEquals(parseServeArgs([]).cluster, null);
  assertEquals(parseServeArgs([]).calloutIssuerFile, null);
  const bad = refusal([...CLUSTER, "--cluster-pass-file", "/p", "--routes", "nats://u:sekrit@h"]);
  assert(!bad.includes("sekrit"), bad);
});

Deno.test("lame duck flags: defaults 30 s and 5 s grace, nats-server's 30 s minimum and grace below duration enforced, cluster only", () => {
  const withPass = ["--routes", "nats://127.0.0.1:6251", "--cluster-pass-file", "/etc/p"];
  const at = (...extra: string[]) =>
    parseClusterArgs(
      Object.fromEntries(
        [...withPass, ...extra].reduce<string[][]>(
          (pairs, x, n) => n % 2 === 0 ? [...pairs, [x.slice(2)]] : (pairs.at(-1)!.push(x), pairs),
          [],
        ),
      ),
      {},
    );
  assertEquals(at()?.lameDuck, { durationS: 30, graceS: 5 });
  assertEquals(at("--lame-duck-duration", "60", "--lame-duck-grace", "1")?.lameDuck, {
    durationS: 60,
    graceS: 1,
  });
  assertThrows(() => at("--lame-duck-duration", "10"), UsageError, "at least 30");
  assertThrows(() => at("--lame-duck-grace", "30"), UsageError, "below --lame-duck-duration");
  assertThrows(() => at("--lame-duck-grace", "0"), UsageError, "at least 1");
  assertThrows(() => at("--lame-duck-grace", "2s"), UsageError, "whole seconds");
  assertThrows(
    () => parseClusterArgs({ "lame-duck-duration": "60" }, {}),
    UsageError,
    "needs a cluster",
  );
});

Deno.test("routes off loopback need mutual route TLS; the route CA must not be the data-plane CA", () => {
  const withPass = [...CLUSTER, "--cluster-pass-file", "/etc/p"];
  assertMatch(refusal([...withPass, "--cluster-host", "0.0.0.0"]), /need --route-tls-cert/);
  assertMatch(
    refusal([...withPass, "--routes", "nats://10.0.0.2:6250"]),
    /route to 10.0.0.2 is not loopback/,
  );
  const routeTls = [
    "--route-tls-cert",
    "/r.crt",
    "--route-tls-key",
    "/r.key",
    "--route-tls-ca",
    "/ca.crt",
  ];
  const ok = parseClusterArgs({
    routes: "nats://10.0.0.2:6250",
    "cluster-host": "0.0.0.0",
    "cluster-pass-file": "/etc/p",
    "route-tls-cert": "/r.crt",
    "route-tls-key": "/r.key",
    "route-tls-ca": "/ca.crt",
  }, {});
  assertEquals(ok?.routeTls?.caFile, "/ca.crt");
  assertMatch(refusal([...withPass, "--route-tls-cert", "/r.crt"]), /go together/);
  const dataTls = ["--tls-cert", "/s.crt", "--tls-key", "/s.key", "--tls-ca", "/ca.crt"];
  assertMatch(refusal([...withPass, ...routeTls, ...dataTls]), /must not be the data-plane CA/);
});

Deno.test("the same CA certificate under another path is refused as route CA", async () => {
  const data = await makeTestPki();
  const routes = await makeRoutePki(1);
  try {
    const copy = `${data.dir}/copy-of-ca.crt`;
    await Deno.copyFile(data.caCert, copy);
    await assertRejects(() => assertSeparateRouteCa(copy, data.caCert), RouteCaError);
    // In a bundle with another certificate: still the same trust root.
    const bundle = `${data.dir}/bundle.crt`;
    await Deno.writeTextFile(
      bundle,
      (await Deno.readTextFile(routes.caCert)) + (await Deno.readTextFile(data.caCert)),
    );
    await assertRejects(() => assertSeparateRouteCa(bundle, data.caCert), RouteCaError);
    await assertSeparateRouteCa(routes.caCert, data.caCert);
  } finally {
    await data.cleanup();
    await routes.cleanup();
  }
});

Deno.test("secret files: the route secret and the callout issuer must be 0600; the issuer is created once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-secrets-" });
  try {
    const passFile = `${dir}/route.pass`;
    await Deno.writeTextFile(passFile, `${PASS}\n`, { mode: 0o600 });
    await Deno.chmod(passFile, 0o600);
    assertEquals(await resolveClusterPass({ kind: "file", path: passFile }), {
      pass: PASS,
      warning: null,
    });
    await Deno.chmod(passFile, 0o640);
    await assertRejects(
      () => resolveClusterPass({ kind: "file", path: passFile }),
      SecretFileError,
    );
    const flagged = await resolveClusterPass({ kind: "flag", value: PASS });
    assertMatch(flagged.warning ?? "", /visible in ps/);
    assert(!flagged.warning!.includes(PASS));

    const issuerFile = `${dir}/issuer.nk`;
    const a = await loadOrCreateCalloutIssuer(issuerFile);
    assertEquals((await Deno.stat(issuerFile)).mode! & 0o777, 0o600);
    const b = await loadOrCreateCalloutIssuer(issuerFile);
    assertEquals(b.getPublicKey(), a.getPublicKey());
    assertMatch(a.getPublicKey(), /^A/);
    await Deno.chmod(issuerFile, 0o644);
    await assertRejects(() => loadOrCreateCalloutIssuer(issuerFile), SecretFileError);
    await Deno.writeTextFile(`${dir}/bad.nk`, "SUAnotaseed\n", { mode: 0o600 });
    await assertRejects(() => loadOrCreateCalloutIssuer(`${dir}/bad.nk`), SecretFileError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cluster names that could break the config are refused", () => {
  assertThrows(
    () => parseServeArgs([...CLUSTER, "--cluster-pass-file", "/p", "--cluster-name", "a b"], {}),
    UsageError,
  );
  assertThrows(
    () => parseServeArgs([...CLUSTER, "--cluster-pass-file", "/p", "--cluster-port", "0"], {}),
    UsageError,
  );
});

Deno.test("serve itself refuses a clustered start without enforce, with the reason on one line", async () => {
  const { runUnibus } = await import("./helpers/serve_process.ts");
  for (
    const [extra, reason] of [
      [[], /needs --bus-auth enforce/],
      [["--bus-auth", "enforce"], /needs --store kv/],
    ] as const
  ) {
    const r = await runUnibus([
      "serve",
      "--data-dir",
      "/nonexistent/unibus",
      "--routes",
      "nats://127.0.0.1:6251",
      "--cluster-pass",
      PASS,
      ...extra,
    ]);
    assertEquals(r.code, 2);
    const err = r.stderr.trim();
    assertEquals(err.split("\n").length, 1, err);
    assertMatch(err, reason);
    assert(!err.includes(PASS) && !r.stdout.includes(PASS), "the secret was echoed");
  }
});

Deno.test("a clustered node with --store kv parses: exactly the flags the issue lists for one machine", () => {
  const o = parseServeArgs([
    "--bus-auth",
    "enforce",
    "--store",
    "kv",
    "--kv-replicas",
    "3",
    "--server-name",
    "n2",
    "--data-dir",
    "/srv/n2",
    "--internal-id-file",
    "/srv/n2/internal.id",
    "--http-addr",
    "127.0.0.1:8471",
    "--nats-port",
    "4251",
    "--cluster-name",
    "trial",
    "--cluster-host",
    "127.0.0.1",
    "--cluster-port",
    "6251",
    "--routes",
    "nats://127.0.0.1:6250,nats://127.0.0.1:6252",
    "--cluster-user",
    "unibus-cluster",
    "--cluster-pass-file",
    "/srv/route.pass",
    "--callout-issuer-file",
    "/srv/callout-issuer.nk",
  ], {});
  assertEquals([o.store, o.kvReplicas, o.busAuth, o.serverName], ["kv", 3, "enforce", "n2"]);
  assertEquals([o.internalIdFile, o.calloutIssuerFile], [
    "/srv/n2/internal.id",
    "/srv/callout-issuer.nk",
  ]);
  assertEquals(o.cluster, {
    name: "trial",
    host: "127.0.0.1",
    port: 6251,
    routes: ["nats://127.0.0.1:6250", "nats://127.0.0.1:6252"],
    user: "unibus-cluster",
    pass: { kind: "file", path: "/srv/route.pass" },
    routeTls: null,
    lameDuck: { durationS: 30, graceS: 5 },
  });
  // Defaults: cluster name "unibus", port 6250; the secret from the environment.
  const d = parseServeArgs([
    "--bus-auth",
    "enforce",
    "--store",
    "kv",
    "--routes",
    "nats://127.0.0.1:6251",
    "--callout-issuer-file",
    "/srv/i.nk",
  ], { UNIBUS_CLUSTER_PASS: "a-route-secret-long-enough" });
  assertEquals([d.cluster?.name, d.cluster?.port, d.cluster?.pass.kind], ["unibus", 6250, "env"]);
  assertEquals(d.kvReplicas, 1);
});
