/**
 * The client's reconnect pacing: a refresh it asks for dials at once, once;
 * every other attempt waits nats.js's usual pause.
 */

import { DialPacing } from "../lib/client/dial_pacing.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

Deno.test("dial pacing: a requested refresh dials at once, and only its first attempt", () => {
  const pacing = new DialPacing(false);
  const plain = pacing.delay();
  assert(plain >= 250 && plain <= 350, `${plain}`);
  pacing.immediateOnce();
  assertEquals(pacing.delay(), 0);
  // A failed first attempt is retried at the usual pace, never in a loop.
  for (let i = 0; i < 50; i++) {
    const d = pacing.delay();
    assert(d >= 250 && d <= 350, `${d}`);
  }
});

Deno.test("dial pacing: with TLS the jitter is nats.js's TLS default (up to 1 s)", () => {
  const pacing = new DialPacing(true);
  for (let i = 0; i < 50; i++) {
    const d = pacing.delay();
    assert(d >= 250 && d <= 1250, `${d}`);
  }
});
