import { NATS_MONITOR_PORT, natsLogOptions, natsMonitorPort } from "../server/nats/log_options.ts";
import { assertEquals, assertThrows } from "./helpers/assert.ts";

Deno.test("monitor and debug toggles resolve as the table says", () => {
  const table: Array<[string | undefined, string | undefined, ReturnType<typeof natsLogOptions>]> =
    [
      // debug,    monitor,  quiet, debug, trace, monitor
      [undefined, undefined, { quiet: true, debug: false, trace: false, monitor: false }],
      [undefined, "1", { quiet: true, debug: false, trace: false, monitor: true }],
      ["1", undefined, { quiet: false, debug: true, trace: false, monitor: true }],
      ["1", "1", { quiet: false, debug: true, trace: false, monitor: true }],
      ["2", undefined, { quiet: false, debug: true, trace: true, monitor: true }],
      ["0", "0", { quiet: true, debug: false, trace: false, monitor: false }],
      ["true", "yes", { quiet: true, debug: false, trace: false, monitor: false }],
      ["", "", { quiet: true, debug: false, trace: false, monitor: false }],
    ];
  for (const [debugEnv, monitorEnv, want] of table) {
    assertEquals(
      natsLogOptions(debugEnv, monitorEnv),
      want,
      `DEBUG=${debugEnv} MONITOR=${monitorEnv}`,
    );
  }
});

Deno.test("the monitor alone never turns on the debug log", () => {
  const o = natsLogOptions(undefined, "1");
  assertEquals([o.monitor, o.debug, o.quiet], [true, false, true]);
});

Deno.test("UNIBUS_NATS_MONITOR_PORT picks the monitoring port; anything but a port is refused", () => {
  assertEquals(natsMonitorPort(undefined), NATS_MONITOR_PORT);
  assertEquals(natsMonitorPort(""), 8222);
  assertEquals(natsMonitorPort("18222"), 18222);
  assertEquals(natsMonitorPort("65535"), 65535);
  for (const bad of ["0", "65536", "08222", "-1", "8222 ", "0x2000", "abc"]) {
    assertThrows(() => natsMonitorPort(bad), RangeError, `not "${bad}"`);
  }
});
