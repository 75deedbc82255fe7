import { openAuditLog } from "../lib/audit_log.ts";
import { createLogger, DeniedBudget } from "../lib/log.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";

Deno.test("the audit log is never opened through a planted link, hard link or FIFO", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unibus-audit-" });
  try {
    const target = `${dir}/precious`;
    await Deno.writeTextFile(target, "keep\n");
    await Deno.chmod(target, 0o644);
    await Deno.symlink(target, `${dir}/sym.log`);
    await Deno.link(target, `${dir}/hard.log`);
    await new Deno.Command("mkfifo", { args: [`${dir}/fifo.log`] }).output();
    for (const name of ["sym.log", "hard.log", "fifo.log"]) {
      await assertRejects(() => openAuditLog(`${dir}/${name}`), Error);
    }
    // The link's target is as it was: no line appended, no mode changed.
    assertEquals(await Deno.readTextFile(target), "keep\n");
    assertEquals((await Deno.stat(target)).mode! & 0o777, 0o644);
    // A plain file is taken, narrowed to 0600, and appended to.
    await Deno.writeTextFile(`${dir}/audit.log`, "old\n", { mode: 0o644 });
    await Deno.chmod(`${dir}/audit.log`, 0o644);
    const log = await openAuditLog(`${dir}/audit.log`);
    log.sink("new");
    log.close();
    assertEquals(await Deno.readTextFile(`${dir}/audit.log`), "old\nnew\n");
    assertEquals((await Deno.stat(`${dir}/audit.log`)).mode! & 0o777, 0o600);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("refusals are audited within a budget, the dropped ones counted; other events always", () => {
  let now = 0;
  const lines: Array<Record<string, unknown>> = [];
  const audited: string[] = [];
  const log = createLogger("t", {
    sink: (l) => lines.push(JSON.parse(l)),
    auditSink: (l) => audited.push(l),
    denied: new DeniedBudget(100, 20, () => now),
  });
  const child = log.child("auth"); // shares the budget
  for (let i = 0; i < 150; i++) child.audit("login.denied", "connection refused", { i });
  for (let i = 0; i < 5; i++) log.audit("login.admitted", "connection admitted", { i });
  assertEquals(lines.filter((l) => l.event === "login.denied").length, 100);
  assertEquals(lines.filter((l) => l.event === "login.admitted").length, 5);
  assertEquals(audited.length, 105);
  now = 1000; // one second later: 20 more
  for (let i = 0; i < 30; i++) log.audit("request.denied", "request refused", { i });
  const later = lines.filter((l) => l.event === "request.denied");
  assertEquals(later.length, 20);
  assertEquals(later[0].suppressedBefore, 50);
  assert(later.slice(1).every((l) => l.suppressedBefore === undefined));
});
