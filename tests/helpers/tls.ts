/**
 * A throw-away CA and a server certificate for 127.0.0.1/localhost, made with
 * the openssl command line (Debian's openssl), for TLS tests.
 *
 * @module
 */

/** Paths of the generated PEM files. */
export interface TestPki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  cleanup(): Promise<void>;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  if (out.code !== 0) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/**
 * Generates a CA and a server certificate signed by it.
 *
 * @example
 * ```ts
 * const pki = await makeTestPki();
 * try { … } finally { await pki.cleanup(); }
 * ```
 */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-pki-" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl(
    [
      "req",
      "-x509",
      ...ec,
      "-keyout",
      "ca.key",
      "-out",
      "ca.crt",
      "-days",
      "2",
      "-subj",
      "/CN=unibus test CA",
    ],
    dir,
  );
  await openssl([
    "req",
    ...ec,
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    "/CN=127.0.0.1",
  ], dir);
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
  );
  await openssl([
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.crt",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  ], dir);
  await Deno.chmod(`${dir}/server.key`, 0o600);
  return {
    dir,
    caCert: `${dir}/ca.crt`,
    serverCert: `${dir}/server.crt`,
    serverKey: `${dir}/server.key`,
    cleanup: () => Deno.remove(dir, { recursive: true }),
  };
}

/**
 * `serve`'s arguments for enforce mode with TLS on both planes from `pki`,
 * pinned to its CA.
 *
 * @example
 * ```ts
 * const s = await startServe({ extraArgs: tlsEnforceArgs(await makeTestPki()) });
 * ```
 */
export function tlsEnforceArgs(pki: TestPki): string[] {
  return [
    "--bus-auth",
    "enforce",
    "--tls-cert",
    pki.serverCert,
    "--tls-key",
    pki.serverKey,
    "--tls-ca",
    pki.caCert,
  ];
}

/** A separate route CA and one route certificate per node. */
export interface RoutePki {
  dir: string;
  caCert: string;
  /** Per node: certificate and key for both ends of a route (serverAuth + clientAuth). */
  nodes: Array<{ cert: string; key: string }>;
  cleanup(): Promise<void>;
}

/**
 * Generates a route CA, distinct from any data-plane CA, and `count` route
 * certificates for 127.0.0.1 (and .11-.13) usable as server and as client (routes are
 * mutual TLS).
 *
 * @example
 * ```ts
 * const routes = await makeRoutePki(3);
 * try { … routes.nodes[0].cert … } finally { await routes.cleanup(); }
 * ```
 */
export async function makeRoutePki(count: number): Promise<RoutePki> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-route-pki-" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "route-ca.key",
    "-out",
    "route-ca.crt",
    "-days",
    "2",
    "-subj",
    "/CN=unibus test route CA",
  ], dir);
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    // 127.0.0.11-13: a node's route listener behind a test proxy (route_proxy.ts).
    "subjectAltName=IP:127.0.0.1,IP:127.0.0.11,IP:127.0.0.12,IP:127.0.0.13,DNS:localhost\n" +
      "extendedKeyUsage=serverAuth,clientAuth\n",
  );
  const nodes = [];
  for (let i = 0; i < count; i++) {
    await openssl(
      ["req", ...ec, "-keyout", `n${i}.key`, "-out", `n${i}.csr`, "-subj", `/CN=route-n${i}`],
      dir,
    );
    await openssl([
      "x509",
      "-req",
      "-in",
      `n${i}.csr`,
      "-CA",
      "route-ca.crt",
      "-CAkey",
      "route-ca.key",
      "-CAcreateserial",
      "-out",
      `n${i}.crt`,
      "-days",
      "2",
      "-extfile",
      "ext.cnf",
    ], dir);
    await Deno.chmod(`${dir}/n${i}.key`, 0o600);
    nodes.push({ cert: `${dir}/n${i}.crt`, key: `${dir}/n${i}.key` });
  }
  return {
    dir,
    caCert: `${dir}/route-ca.crt`,
    nodes,
    cleanup: () => Deno.remove(dir, { recursive: true }),
  };
}
