import { type AclRoom, expressibleRooms, userPermissions } from "../lib/auth/acl.ts";
import { jwtName } from "../server/auth/callout.ts";
import { assertEquals } from "./helpers/assert.ts";

const ME = "ab".repeat(32);

function room(id: string, subject: string, persist = false): AclRoom {
  return { id, subject, policy: { persist } };
}

Deno.test("acl: a room whose subject breaks the grammar grants nothing; the others still do", () => {
  const good = [room("g1", "team.good"), room("g2", "team.log", true)];
  const bad = [
    room("b1", ""),
    room("b2", "snow.\u2603"),
    room("b3", "team.>"),
    room("b4", `_INBOX.${"cd".repeat(32)}.replies`),
    room("b5", "chat.ops\u0000x"),
    room("b6", "$SYS.REQ.SERVER.PING", true),
  ];
  const split = expressibleRooms([...bad.slice(0, 3), ...good, ...bad.slice(3)]);
  assertEquals(split.granted, good);
  assertEquals(
    split.inexpressible.map((x) => [x.room.id, x.rule]),
    [
      ["b1", "empty"],
      ["b2", "not_ascii"],
      ["b3", "wildcard"],
      ["b4", "reserved_prefix"],
      ["b5", "control_character"],
      ["b6", "reserved_prefix"],
    ],
  );
  // The ACL builder applies the same split itself: bad rooms change nothing.
  assertEquals(userPermissions(ME, [...good, ...bad]), userPermissions(ME, good));
  const perms = userPermissions(ME, [...good, ...bad]);
  assertEquals(perms.sub.allow.includes("team.good"), true);
  assertEquals(perms.pub.allow.some((s) => s.includes("ROOM_b6")), false);
});

Deno.test("callout: the JWT name of a handle is printable ASCII, non-ASCII escaped", () => {
  assertEquals(jwtName("ada"), "ada");
  assertEquals(jwtName("bob \u2603"), "bob \\u2603");
  assertEquals(jwtName("caf\u00e9"), "caf\\u00e9");
  assertEquals(jwtName("\u{1f600}"), "\\ud83d\\ude00");
  // What the JWT library does with it must not throw (btoa takes Latin-1 only).
  btoa(jwtName("\u2603\u{1f600}"));
});
