// Two agents on end-to-end encrypted rooms, on Node.js, with the npm build
// of the client (`bash scripts/build-npm`, then `npm install <repo>/dist/npm`).
// The same program as scripts/examples/two_agents.ts: agent.<name>.in is an
// agent's inbox, agent.<name>.out its outbox.
//
//   node two_agents.mjs SCOUT_ID_FILE PLANNER_ID_FILE [NATS_URL] [CTRL_URL] [CA_FILE]
//
// Both identities must be on the allowlist (`unibus user add …`). With
// CA_FILE, the NATS and control-plane connections trust that CA only.

import { connect, loadIdentity } from "@unibus/client";

const [scoutFile, plannerFile, nats = "nats://127.0.0.1:4250", ctrl = "http://127.0.0.1:8470", ca] =
  process.argv.slice(2);
if (!scoutFile || !plannerFile) {
  console.error(
    "usage: two_agents.mjs SCOUT_ID_FILE PLANNER_ID_FILE [NATS_URL] [CTRL_URL] [CA_FILE]",
  );
  process.exit(2);
}
const tls = ca ? { caFile: ca } : undefined;
const dec = new TextDecoder();
const open = async (file) =>
  connect({ natsServers: [nats], ctrlUrls: [ctrl], identity: await loadIdentity(file), tls });
const scout = await open(scoutFile);
const planner = await open(plannerFile);

// A random suffix keeps repeated runs from colliding with earlier rooms.
const run = crypto.randomUUID().slice(0, 8);
const inboxSubject = `agent.scout-${run}.in`;
const outboxSubject = `agent.scout-${run}.out`;
const inbox = await scout.createRoom(inboxSubject);
const outbox = await scout.createRoom(outboxSubject);
await scout.addMember(inbox, planner.identity.signPubHex);
await scout.addMember(outbox, planner.identity.signPubHex);
await planner.refreshSession(); // pick up the new rooms' subjects

let finished;
const done = new Promise((resolve) => (finished = resolve));
await scout.subscribe(inbox, (meta, data) => {
  if (meta.sender === scout.identity.signPubHex) return;
  const task = dec.decode(data);
  console.log(`scout   <- ${task}`);
  scout.publish(outbox, `done: ${task}`);
});
// The planner names the rooms by subject, as a separate program would.
await planner.subscribe(outboxSubject, (meta, data) => {
  if (meta.sender !== scout.identity.signPubHex) return;
  console.log(`planner <- ${dec.decode(data)}`);
  finished();
});
await planner.publish(inboxSubject, "map the north ridge");
await done;

await scout.deleteRoom(inbox);
await scout.deleteRoom(outbox);
await scout.close();
await planner.close();
