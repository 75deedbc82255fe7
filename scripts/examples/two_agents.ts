/**
 * Two agents on end-to-end encrypted rooms, with the subject convention of
 * the seeds: agent.<name>.in is an agent's inbox, agent.<name>.out its outbox.
 *
 *   deno run -A scripts/examples/two_agents.ts scout.id planner.id [nats-url] [ctrl-url]
 *
 * Both identities must be on the allowlist (`unibus user add …`). The scout
 * creates its two rooms and adds the planner; the planner sends a task to the
 * scout's inbox; the scout answers on its outbox. Every message is encrypted
 * for the room's members and signed by its sender.
 *
 * @module
 */

import { connect, loadIdentity } from "../../lib/client/mod.ts";

const [scoutFile, plannerFile, nats = "nats://127.0.0.1:4250", ctrl = "http://127.0.0.1:8470"] =
  Deno.args;
if (!scoutFile || !plannerFile) {
  console.error("usage: two_agents.ts SCOUT_ID_FILE PLANNER_ID_FILE [NATS_URL] [CTRL_URL]");
  Deno.exit(2);
}
const dec = new TextDecoder();
const scout = await connect({
  natsServers: [nats],
  ctrlUrls: [ctrl],
  identity: await loadIdentity(scoutFile),
});
const planner = await connect({
  natsServers: [nats],
  ctrlUrls: [ctrl],
  identity: await loadIdentity(plannerFile),
});

// A random suffix keeps repeated runs from colliding with earlier rooms.
const run = crypto.randomUUID().slice(0, 8);
const inboxSubject = `agent.scout-${run}.in`;
const outboxSubject = `agent.scout-${run}.out`;
const inbox = await scout.createRoom(inboxSubject);
const outbox = await scout.createRoom(outboxSubject);
await scout.addMember(inbox, planner.identity.signPubHex);
await scout.addMember(outbox, planner.identity.signPubHex);
await planner.refreshSession(); // pick up the new rooms' subjects

const done = Promise.withResolvers<void>();
await scout.subscribe(inbox, (meta, data) => {
  if (meta.sender === scout.identity.signPubHex) return;
  const task = dec.decode(data);
  console.log(`scout   <- ${task}`);
  scout.publish(outbox, `done: ${task}`);
});
// The planner did not create the rooms: it names them by subject, as a separate
// program would (the library looks the room up and verifies its signed log).
await planner.subscribe(outboxSubject, (meta, data) => {
  if (meta.sender !== scout.identity.signPubHex) return;
  console.log(`planner <- ${dec.decode(data)}`);
  done.resolve();
});
await planner.publish(inboxSubject, "map the north ridge");
await done.promise;

await scout.deleteRoom(inbox);
await scout.deleteRoom(outbox);
await scout.close();
await planner.close();
