import {
  type AclRoom,
  aclRooms,
  expressibleRooms,
  inboxPrefixFor,
  MAX_ACL_SUBJECT_BYTES,
  userPermissions,
} from "../lib/auth/acl.ts";
import { REFRESH_NOTICE_SUFFIX, ROOM_NOTICE_SUFFIX } from "../lib/notices.ts";
import { jwtName } from "../server/auth/callout.ts";
import { REFRESH_NOTICE_SUFFIX as SENT_REFRESH } from "../server/auth/enforcer.ts";
import { ROOM_NOTICE_SUFFIX as SENT_ROOM } from "../server/rooms/notices.ts";
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

Deno.test("acl: past its size bound the ACL keeps the user's own and oldest rooms, the same each time", () => {
  const long = (i: number) => `x${i}.`.padEnd(255, "a");
  const OTHER = "cd".repeat(32);
  // Rooms others added the user to, with ids chosen to sort first, and two
  // of the user's own, created last. All of one cost (a persisted room's
  // wire subject is shorter than these names), so the kept ones are a prefix.
  const theirs = Array.from({ length: 1200 }, (_, i): AclRoom => ({
    id: `0${String(i).padStart(31, "0")}`,
    subject: long(i),
    policy: { persist: false },
    createdBy: OTHER,
    createdAt: 1000 + i,
  }));
  const mine: AclRoom[] = [
    { id: "f1", subject: "mine.one", policy: { persist: true }, createdBy: ME, createdAt: 9999 },
    { id: "f2", subject: "mine.two", policy: { persist: false }, createdBy: ME, createdAt: 9999 },
  ];
  const { granted, leftOut } = aclRooms(ME, [...theirs, ...mine]);
  assertEquals(granted.slice(0, 2), mine);
  assertEquals(granted.length + leftOut.length, 1202);
  assertEquals(leftOut.length > 0 && leftOut.every((x) => x.rule === "acl_full"), true);
  // The oldest of the others' rooms are the ones kept.
  assertEquals(
    granted.slice(2).map((r) => r.id),
    theirs.slice(0, granted.length - 2).map((r) => r.id),
  );
  const perms = userPermissions(ME, [...theirs, ...mine]);
  const bytes = [...perms.pub.allow, ...perms.sub.allow].reduce((n, s) => n + s.length, 0);
  assertEquals(bytes <= MAX_ACL_SUBJECT_BYTES + 1024, true, `${bytes} bytes of subjects`);
  // Deterministic and idempotent: what the callout grants, the enforcer re-derives.
  assertEquals(userPermissions(ME, granted), perms);
  assertEquals(userPermissions(ME, [...mine, ...theirs].reverse()), perms);
});

Deno.test("acl: the notice subjects the server sends are ones no member may publish", () => {
  // One constant (lib/notices.ts) for the server that sends, the client that
  // listens and the deny rule: a rename in one place alone would let members
  // forge notices, or make clients miss them.
  assertEquals([SENT_REFRESH, SENT_ROOM], [REFRESH_NOTICE_SUFFIX, ROOM_NOTICE_SUFFIX]);
  const deny = userPermissions(ME, []).pub.deny;
  const covered = (subject: string) =>
    deny.some((d) => {
      const [p, s] = [d.split("."), subject.split(".")];
      return p.every((t, i) =>
        t === ">" ? s.length > i : t === "*" ? s[i] !== undefined : t === s[i]
      ) &&
        (p.at(-1) === ">" || p.length === s.length);
    });
  const other = inboxPrefixFor("cd".repeat(32));
  for (const suffix of [REFRESH_NOTICE_SUFFIX, ROOM_NOTICE_SUFFIX]) {
    assertEquals(covered(`${other}.${suffix}`), true, suffix);
  }
  assertEquals(covered(`${other}.reply.1`), false);
});
