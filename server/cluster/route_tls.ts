/**
 * The route CA must not be the data-plane CA: the route layer
 * authenticates nodes, and with a shared trust root any client certificate
 * from the data-plane CA would open the route port. The flags refuse the same
 * path; this refuses the same certificate under another path or in a bundle.
 *
 * @module
 */

import { X509Certificate } from "node:crypto";
import { readRegularFile } from "../../lib/fs/read_regular.ts";

/** The route CA shares a certificate with the data-plane CA, or cannot be read. */
export class RouteCaError extends Error {
  override name = "RouteCaError";
}

// A CA bundle is a few KiB; the bound keeps a wrong path from being read whole.
const MAX_PEM_BYTES = 1024 * 1024;

async function fingerprints(path: string, what: string): Promise<Set<string>> {
  let pem: string;
  try {
    pem = new TextDecoder().decode((await readRegularFile(path, MAX_PEM_BYTES)).bytes);
  } catch (err) {
    throw new RouteCaError(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new RouteCaError(`${what} ${path} holds no PEM certificate`);
  const out = new Set<string>();
  for (const b of blocks) {
    try {
      out.add(new X509Certificate(b).fingerprint256);
    } catch {
      throw new RouteCaError(`${what} ${path} holds a certificate that does not parse`);
    }
  }
  return out;
}

/**
 * Throws {@linkcode RouteCaError} when the two CA files are the same file or
 * share any certificate.
 *
 * @example
 * ```ts
 * await assertSeparateRouteCa("/etc/unibus/route-ca.crt", "/etc/unibus/ca.crt");
 * ```
 */
export async function assertSeparateRouteCa(routeCa: string, dataCa: string): Promise<void> {
  const [a, b] = await Promise.all([
    Deno.realPath(routeCa).catch(() => routeCa),
    Deno.realPath(dataCa).catch(() => dataCa),
  ]);
  const refuse = () =>
    new RouteCaError(
      "--route-tls-ca is the data-plane CA (--tls-ca): a client certificate would open the route port; use a separate route CA",
    );
  if (a === b) throw refuse();
  const [routeSet, dataSet] = await Promise.all([
    fingerprints(routeCa, "route CA"),
    fingerprints(dataCa, "data-plane CA"),
  ]);
  for (const f of routeSet) if (dataSet.has(f)) throw refuse();
}
