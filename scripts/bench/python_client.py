"""The Python side of `deno task bench --only=python` (scripts/bench/python.ts
runs it against a serve it started): the Python client's publish → subscribe
rate and request/reply round trip in an encrypted room, beside raw nats-py on
a plain room of the same serve, with the same logins. Prints one JSON object.

    python python_client.py NATS_URL CTRL_URL ADA_ID BOB_ID MESSAGES ROUND_TRIPS
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import unibus

SIZES = (256, 16_384)


async def rate(n: int, send: Callable[[int], Awaitable[None]], received: Callable[[], int]) -> float:
    """Messages per second from the first send to the n-th delivery (bounded: 120 s)."""
    t0 = time.perf_counter()
    for i in range(n):
        await send(i)
    deadline = t0 + 120
    while received() < n:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{received()} of {n} delivered within 120 s")
        await asyncio.sleep(0.001)
    return n / (time.perf_counter() - t0)


async def round_trips(n: int, ask: Callable[[], Awaitable[None]]) -> dict[str, float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await ask()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 3), "p99_ms": round(times[int(len(times) * 0.99) - 1], 3)}


async def main(nats_url: str, ctrl_url: str, ada_file: str, bob_file: str, messages: int, trips: int) -> dict:
    ada, bob = unibus.load_identity(ada_file), unibus.load_identity(bob_file)
    out: dict[str, dict] = {"client": {}, "nats_py": {}}
    async with await unibus.connect([nats_url], [ctrl_url], ada) as a, await unibus.connect(
        [nats_url], [ctrl_url], bob
    ) as b:
        run = os.urandom(4).hex()
        room = await a.create_room(f"bench.py.{run}", members=[bob.sign_pub_hex])
        plain = await a.create_room(f"bench.pyraw.{run}", policy=[], members=[bob.sign_pub_hex])
        rpc = await a.create_room(f"bench.pyrpc.{run}", policy=[], members=[bob.sign_pub_hex])
        await b.refresh_session()
        await b.respond(room, lambda m: m.data)

        async def echo(msg) -> None:  # type: ignore[no-untyped-def]
            if msg.reply:
                await b.nats.publish(msg.reply, msg.data)

        await b.nats.subscribe(rpc.subject, cb=echo)
        for size in SIZES:
            n = messages if size == 256 else max(1, messages // 10)
            payload = os.urandom(size)
            got = [0]

            def count(_m: unibus.Message) -> None:
                got[0] += 1

            sub = await b.subscribe(room, count)
            per_s = await rate(n, lambda _i: a.publish(room, payload), lambda: got[0])
            await sub.unsubscribe()
            rtt = await round_trips(trips, lambda: a.request(room, payload, timeout=10))
            out["client"][str(size)] = {"msgs_per_s": round(per_s), **rtt}

            raw = [0]

            async def raw_count(_msg) -> None:  # type: ignore[no-untyped-def]
                raw[0] += 1

            rsub = await b.nats.subscribe(plain.subject, cb=raw_count)
            await b.nats.flush()
            raw_per_s = await rate(n, lambda _i: a.nats.publish(plain.subject, payload), lambda: raw[0])
            await rsub.unsubscribe()

            async def raw_ask() -> None:
                await a.nats.request(rpc.subject, payload, timeout=10)

            out["nats_py"][str(size)] = {"msgs_per_s": round(raw_per_s), **await round_trips(trips, raw_ask)}
        await a.delete_room(room)
        await a.delete_room(plain)
        await a.delete_room(rpc)
    return out


if __name__ == "__main__":
    nats_url, ctrl_url, ada_file, bob_file, messages, trips = sys.argv[1:7]
    print(json.dumps(asyncio.run(main(nats_url, ctrl_url, ada_file, bob_file, int(messages), int(trips)))))
