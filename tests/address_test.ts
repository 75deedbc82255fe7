import { isLoopbackHost, isLoopbackUrl, parseHostPort, parsePort } from "../lib/net/address.ts";
import { assertEquals, assertThrows } from "./helpers/assert.ts";

Deno.test("loopback means localhost, 127.0.0.0/8 and ::1, nothing else", () => {
  for (const h of ["localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]", "LOCALHOST"]) {
    assertEquals(isLoopbackHost(h), true, h);
  }
  for (
    const h of [
      "0.0.0.0",
      "::",
      "10.0.0.1",
      "192.168.1.1",
      "example.org",
      "127.0.0.300",
      "128.0.0.1",
    ]
  ) {
    assertEquals(isLoopbackHost(h), false, h);
  }
  assertEquals(isLoopbackUrl("nats://127.0.0.1:4250"), true);
  assertEquals(isLoopbackUrl("tls://203.0.113.1:4250"), false);
  assertEquals(isLoopbackUrl("::garbage"), false);
});

Deno.test("host:port parsing covers IPv4, names and bracketed IPv6", () => {
  assertEquals(parseHostPort("127.0.0.1:8470"), { host: "127.0.0.1", port: 8470 });
  assertEquals(parseHostPort("localhost:0"), { host: "localhost", port: 0 });
  assertEquals(parseHostPort("[::1]:8470"), { host: "::1", port: 8470 });
  for (const bad of ["8470", ":8470", "host:", "::1:8470", "a b:1", "host:65536"]) {
    assertThrows(() => parseHostPort(bad), Error);
  }
  assertThrows(() => parsePort("1e3"), Error);
});
