"""Two agents on end-to-end encrypted rooms, in Python: the same program as
scripts/examples/two_agents.ts and clients/node/examples/two_agents.mjs.
agent.<name>.in is an agent's inbox, agent.<name>.out its outbox.

    python two_agents.py SCOUT_ID_FILE PLANNER_ID_FILE [NATS_URL] [CTRL_URL] [CA_FILE]

Both identities must be on the allowlist (``unibus user add …``). With
CA_FILE, the NATS and control-plane connections trust that CA only.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import unibus


async def main(scout_file: str, planner_file: str, nats: str, ctrl: str, ca: str | None) -> None:
    async def open_client(path: str) -> unibus.Client:
        return await unibus.connect([nats], [ctrl], unibus.load_identity(path), ca=ca)

    async with await open_client(scout_file) as scout, await open_client(planner_file) as planner:
        # A random suffix keeps repeated runs from colliding with earlier rooms.
        run = uuid.uuid4().hex[:8]
        inbox_subject, outbox_subject = f"agent.scout-{run}.in", f"agent.scout-{run}.out"
        planner_key = planner.identity.sign_pub_hex
        inbox = await scout.create_room(inbox_subject, members=[planner_key])
        outbox = await scout.create_room(outbox_subject, members=[planner_key])
        await planner.refresh_session()  # pick up the new rooms' subjects

        async def on_task(msg: unibus.Message) -> None:
            if msg.sender == scout.identity.sign_pub_hex:
                return
            print(f"scout   <- {msg.text}", flush=True)
            await scout.publish(outbox, f"done: {msg.text}")

        await scout.subscribe(inbox, on_task)
        # The planner names the rooms by subject, as a separate program would,
        # and listens before it asks, so the answer cannot come first.
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_result(msg: unibus.Message) -> None:
            if msg.sender == scout.identity.sign_pub_hex and not answered.done():
                print(f"planner <- {msg.text} (from {msg.handle})", flush=True)
                answered.set_result(None)

        await planner.subscribe(outbox_subject, on_result)
        await planner.publish(inbox_subject, "map the north ridge")
        await asyncio.wait_for(answered, 30)

        await scout.delete_room(inbox)
        await scout.delete_room(outbox)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 2:
        print("usage: two_agents.py SCOUT_ID_FILE PLANNER_ID_FILE [NATS_URL] [CTRL_URL] [CA_FILE]", file=sys.stderr)
        sys.exit(2)
    defaults = [None, None, "nats://127.0.0.1:4250", "http://127.0.0.1:8470", None]
    scout_file, planner_file, nats_url, ctrl_url, ca_file = (args + defaults[len(args) :])[:5]
    try:
        asyncio.run(main(scout_file, planner_file, nats_url, ctrl_url, ca_file))  # type: ignore[arg-type]
    except (unibus.UnibusError, unibus.IdentityError) as err:
        print(f"two_agents: {err}", file=sys.stderr)
        sys.exit(1)
