/**
 * An attacker's read of the control-plane client: a node (or whoever
 * answers in its place) that redirects a signed request must not get it
 * carried elsewhere, headers and body included.
 */

import { ControlPlaneClient } from "../lib/client/control_plane.ts";
import { ControlPlaneError } from "../lib/client/errors.ts";
import { generateIdentity } from "../lib/identity/identity.ts";
import { assertEquals, assertRejects } from "./helpers/assert.ts";

Deno.test("a signed request answered with a redirect is refused, never sent where it points", async () => {
  const seen: string[] = [];
  const elsewhere = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    seen.push(
      `${req.method} ${new URL(req.url).pathname} ${req.headers.get("x-unibus-signature")}`,
    );
    return Response.json({ rooms: [] });
  });
  const redirecting = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req) =>
      new Response(null, {
        status: 307,
        headers: {
          location: `http://127.0.0.1:${elsewhere.addr.port}${new URL(req.url).pathname}`,
        },
      }),
  );
  const client = new ControlPlaneClient({
    urls: [`http://127.0.0.1:${redirecting.addr.port}`],
    signer: generateIdentity("ada").signer,
    retryBudgetMs: 0,
  });
  try {
    const err = await assertRejects(() => client.deleteRoom("0".repeat(32)), ControlPlaneError);
    assertEquals(err.status, 307);
    assertEquals(seen, []);
  } finally {
    client.close();
    await redirecting.shutdown();
    await elsewhere.shutdown();
  }
});
