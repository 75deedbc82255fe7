import { assertEquals } from "./helpers/assert.ts";
import {
  handleViolation,
  isRoomSubject,
  MAX_SUBJECT_LENGTH,
  subjectViolation,
  textViolation,
} from "../lib/grammar.ts";

Deno.test("grammar: literal subjects of printable ASCII tokens are room subjects", () => {
  for (
    const s of [
      "chat.ops",
      "agent.scout.in",
      "a",
      "A-Z_0-9.~!#%&'()+,/:;<=?@[]^`{|}",
      "x".repeat(MAX_SUBJECT_LENGTH),
      "chat.$x",
      "chat._x",
    ]
  ) {
    assertEquals(subjectViolation(s), null, s);
    assertEquals(isRoomSubject(s), true, s);
  }
});

Deno.test("grammar: each broken subject rule is named", () => {
  const cases: Array<[unknown, string]> = [
    [42, "not_a_string"],
    [null, "not_a_string"],
    ["", "empty"],
    ["x".repeat(MAX_SUBJECT_LENGTH + 1), "too_long"],
    ["chat.ops\u0000x", "control_character"],
    ["\u0000x", "control_character"],
    ["chat\u007f", "control_character"],
    ["chat\u001b[31m", "control_character"],
    ["chat ops", "whitespace"],
    ["chat\tops", "whitespace"],
    ["chat\nops", "whitespace"],
    ["chat.\u2603", "not_ascii"],
    ["chat.\u00e9", "not_ascii"],
    ["chat.\u{1f600}", "not_ascii"],
    ["chat.\ud800", "not_ascii"],
    ["chat.\u00a0", "not_ascii"],
    ["chat..x", "empty_token"],
    [".chat", "empty_token"],
    ["chat.", "empty_token"],
    [".", "empty_token"],
    ["chat.*", "wildcard"],
    ["chat.>", "wildcard"],
    ["chat.a*b", "wildcard"],
    ["$SYS.REQ.SERVER.PING", "reserved_prefix"],
    ["$JS.API.STREAM.LIST", "reserved_prefix"],
    ["_INBOX.abc.unibus.refresh", "reserved_prefix"],
    ["_R_.x", "reserved_prefix"],
  ];
  for (const [value, rule] of cases) {
    const v = subjectViolation(value);
    assertEquals(v?.rule, rule, JSON.stringify(value));
    assertEquals(v!.message.includes("\n"), false, "one-line message");
    assertEquals(isRoomSubject(value), false);
  }
});

Deno.test("grammar: free text is well-formed Unicode without NUL or control characters", () => {
  const rules = { maxLength: 8 };
  for (const s of ["ada", "snow \u2603", "\u{1f600}".repeat(8), "caf\u00e9", " x "]) {
    assertEquals(textViolation(s, rules), null, s);
  }
  const cases: Array<[unknown, string]> = [
    [7, "not_a_string"],
    ["", "empty"],
    ["123456789", "too_long"],
    ["\u{1f600}".repeat(9), "too_long"],
    ["a\u0000b", "nul"],
    ["a\ud800", "lone_surrogate"],
    ["\udc00a", "lone_surrogate"],
    ["a\nb", "control_character"],
    ["a\u007f", "control_character"],
    ["a\u0085", "control_character"],
  ];
  for (const [value, rule] of cases) {
    assertEquals(textViolation(value, rules)?.rule, rule, JSON.stringify(value));
  }
  assertEquals(textViolation("a\nb", { ...rules, lineBreaks: true }), null);
  assertEquals(textViolation("a\rb", { ...rules, lineBreaks: true })?.rule, "control_character");
});

Deno.test("grammar: a handle is 1-64 characters that show something", () => {
  assertEquals(handleViolation("ada \u2603"), null);
  assertEquals(handleViolation("x".repeat(64)), null);
  assertEquals(handleViolation("x".repeat(65))?.rule, "too_long");
  assertEquals(handleViolation("   ")?.rule, "blank");
  assertEquals(handleViolation("a\u0000")?.rule, "nul");
});
