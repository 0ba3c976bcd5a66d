"""A second process writing to a conversation store, for the multi-process and kill -9 tests.

    python store_worker.py turns URL SESSION_ID NAME NUM_TURNS CONV_ID[,CONV_ID...]
        NUM_TURNS turns round-robin over the conversations; a turn that finds another reply open
        waits and tries again. Prints "finished" at the end.
    python store_worker.py loop URL SESSION_ID CONV_ID LEASE_S
        turns forever, each reply streamed in 200 small updates; prints "streaming K" once reply K
        has started and "done K" once it is stored complete.
"""

from __future__ import annotations

import asyncio
import random
import sys

from chatstream.conversations import StoreOptions, TurnInProgress, TurnTokens, open_store


def full_reply(name: str, k: int) -> str:
    return f"{name}:{k}:" + "".join(chr(97 + (k + i) % 26) for i in range(200))


async def turns(url: str, session_id: str, name: str, num_turns: int, conversation_ids: list[str]) -> None:
    store = await open_store(url)
    for k in range(num_turns):
        cid = conversation_ids[k % len(conversation_ids)]
        while True:
            try:
                opened = await store.begin_turn(session_id, cid, f"{name}:{k}")
                break
            except TurnInProgress:
                await asyncio.sleep(random.uniform(0.001, 0.01))
        reply = opened.open_reply
        text = full_reply(name, k)
        for j in (50, 100, 150):
            await store.update_reply(session_id, cid, reply.id, text[:j])
            await asyncio.sleep(0)
        await store.finish_reply(session_id, cid, reply.id, text=text, finish_reason="stop",
                                 tokens=TurnTokens("m", (k,), (k + 1,)))
    await store.close()
    print("finished", flush=True)


async def loop(url: str, session_id: str, cid: str, lease_s: float) -> None:
    store = await open_store(url, StoreOptions(reply_lease_s=lease_s))
    k = 0
    while True:
        opened = await store.begin_turn(session_id, cid, f"question {k}")
        reply_id = opened.open_reply.id
        text = full_reply("loop", k)
        for j in range(1, 201):
            await store.update_reply(session_id, cid, reply_id, text[:j])
            if j == 1:
                print(f"streaming {k}", flush=True)
            await asyncio.sleep(0.005)
        await store.finish_reply(session_id, cid, reply_id, text=text, finish_reason="stop")
        print(f"done {k}", flush=True)
        k += 1


if __name__ == "__main__":
    mode, url, session_id = sys.argv[1:4]
    if mode == "turns":
        asyncio.run(turns(url, session_id, sys.argv[4], int(sys.argv[5]), sys.argv[6].split(",")))
    else:
        asyncio.run(loop(url, session_id, sys.argv[4], float(sys.argv[5])))
