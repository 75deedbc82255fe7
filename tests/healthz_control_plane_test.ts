/**
 * `/healthz` names a control-plane bucket or stream that is missing: with
 * the allowlist's bucket deleted every login is refused, and a monitor must
 * see a node in that state as down, not "ok".
 */

import { jetstreamManager } from "@nats-io/jetstream";
import { connect as natsConnect } from "@nats-io/transport-node";
import { NativeNkeyPair, nkeyAuthenticatorFor, Prefix } from "../lib/auth/nkey.ts";
import { loadIdentity } from "../lib/identity/identity.ts";
import { CONTROL_PLANE_CHECK_CACHE_MS } from "../server/http/control_plane_check.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { clientBus } from "./helpers/client_bus.ts";
import { waitFor } from "./helpers/wait.ts";

Deno.test("healthz is 503 naming a deleted control-plane bucket, 200 while all are there", async () => {
  const b = await clientBus("kv");
  try {
    const health = async () => {
      const res = await fetch(`${b.s.httpUrl}/healthz`);
      return { status: res.status, body: await res.json() };
    };
    const ok = await health();
    assertEquals([ok.status, ok.body.controlPlane.problems], [200, []]);
    // The operator's own identity (the control plane's account) deletes the
    // allowlist's stream, as a mistake or an attack on that account would.
    const id = await loadIdentity(b.internalId);
    const nc = await natsConnect({
      servers: `127.0.0.1:${b.s.natsPort}`,
      authenticator: nkeyAuthenticatorFor(new NativeNkeyPair(Prefix.User, id.signSeed)),
    });
    try {
      await (await jetstreamManager(nc)).streams.delete("KV_UNIBUS_users");
    } finally {
      await nc.close();
    }
    const down = await waitFor(async () => {
      const h = await health();
      return h.status === 503 && h;
    }, { what: "healthz to answer 503", timeoutMs: 4 * CONTROL_PLANE_CHECK_CACHE_MS + 2000 });
    assertEquals(down.body.status, "unavailable");
    const problems: string[] = down.body.controlPlane.problems;
    assertEquals(problems.length, 1, problems.join("; "));
    assert(problems[0].startsWith("KV_UNIBUS_users: "), problems[0]);
  } finally {
    await b.stop();
  }
});
