/**
 * Per-user limits at the data plane, against a real serve in enforce mode:
 * a runaway client opening 1,000 connections gets the configured number and
 * a clear refusal for the rest, while another user logs in as usual; closing
 * connections frees their places.
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { assertEquals } from "./helpers/assert.ts";
import { addBusUser, connectAs } from "./helpers/bus.ts";
import { startBus, stopBus } from "./helpers/rooms_api.ts";
import { waitFor } from "./helpers/wait.ts";

const CONNECTIONS = 20;

Deno.test("a runaway user opening 1,000 connections is held to its limit; others are not touched", async () => {
  const bus = await startBus(["--max-connections-per-user", String(CONNECTIONS)]);
  const open: NatsConnection[] = [];
  try {
    const runaway = await addBusUser(bus.store, "runaway");
    const calm = await addBusUser(bus.store, "calm");

    // 1,000 connection attempts, in waves of 50.
    let admitted = 0;
    let refused = 0;
    for (let wave = 0; wave < 20; wave++) {
      const tries = await Promise.allSettled(
        Array.from({ length: 50 }, () => connectAs(bus.s.natsPort, runaway)),
      );
      for (const t of tries) {
        if (t.status === "fulfilled") {
          admitted++;
          open.push(t.value);
        } else refused++;
      }
    }
    // Exactly the limit, racing waves included: a login is counted from its check.
    assertEquals(admitted, CONNECTIONS);
    assertEquals(admitted + refused, 1000);
    await bus.s.waitFor((l) =>
      l.msg === "connection refused" && /too many connections/.test(String(l.reason))
    );
    // Another user logs in and talks as usual.
    const other = await connectAs(bus.s.natsPort, calm);
    open.push(other);
    await other.flush();

    // Closing connections frees places: the user logs in again.
    for (const nc of open.splice(0, 5)) await nc.close();
    const again = await waitFor(
      () => connectAs(bus.s.natsPort, runaway).catch(() => null),
      { timeoutMs: 10_000, what: "a login after closing five connections" },
    );
    open.push(again);
  } finally {
    for (const nc of open) await nc.close().catch(() => {});
    await stopBus(bus);
  }
});
