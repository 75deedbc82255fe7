/**
 * Twenty cold starts in a row of three `unibus serve` nodes launched at the
 * same instant on empty data dirs, two clusters at a time, with no second
 * try in the harness: every one forms a JetStream meta group of all three
 * and is ready. nats-server 2.10.27 now and then leaves a node out of a
 * group of two on such a start; the left-out node restarts its nats-server
 * (server/cluster/meta_watchdog.ts), which the count of healed starts shows.
 */

import { assertEquals } from "./helpers/assert.ts";
import { coldStarts } from "./helpers/cold_start.ts";

Deno.test("20 cold starts in a row: the meta group has all three nodes every time, no second try", async () => {
  const f = await coldStarts(20, 2);
  console.log(
    `cold starts: ${f.formed} of ${f.starts} formed (${f.healed} healed by a left-out node), ` +
      `ready p50 ${f.readyP50Ms} ms, max ${f.readyMaxMs} ms`,
  );
  assertEquals(f.failures, []);
  assertEquals(f.formed, 20);
});
