"""Concurrent writers: turns of many coroutines, store handles and processes never mix."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from store_worker import full_reply

from chatstream.conversations import TurnInProgress, TurnTokens

pytestmark = pytest.mark.anyio
WORKER = Path(__file__).with_name("store_worker.py")
REPO = Path(__file__).resolve().parents[2]


def worker_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def check_pairs(conversation, expected_users: set[str], reply_of) -> None:
    """Every user message is followed by its own complete reply, and the turns are exactly the expected ones."""
    messages = conversation.messages
    assert len(messages) == 2 * len(expected_users)
    for user, reply in zip(messages[0::2], messages[1::2], strict=True):
        assert (user.role, reply.role, user.status, reply.status) == ("user", "assistant", "complete", "complete")
        assert reply.text == reply_of(user.text)
    assert {m.text for m in messages[0::2]} == expected_users


async def test_20_concurrent_turns_over_10_conversations_of_2_sessions(backend):
    handles = [await backend.open() for _ in range(3)]  # three connections, as three processes would have
    a, b = await handles[0].create_session(), await handles[0].create_session()
    conversations = {sid: [(await handles[0].create_conversation(sid)).id for _ in range(5)] for sid in (a.id, b.id)}
    jobs = [(sid, cid, turn) for sid in (a.id, b.id) for cid in conversations[sid] for turn in range(2)]
    assert len(jobs) == 20
    random.Random(7).shuffle(jobs)
    conflicts = Counter()

    async def one_turn(i: int, sid: str, cid: str, turn: int) -> None:
        store = handles[i % len(handles)]
        text = f"{cid[:8]}/{turn}"
        while True:
            try:
                opened = await store.begin_turn(sid, cid, text)
                break
            except TurnInProgress:
                conflicts[cid] += 1
                await asyncio.sleep(random.uniform(0.001, 0.01))
        reply = opened.open_reply
        assert opened.messages[-2].text == text
        for j in range(1, 6):
            await store.update_reply(sid, cid, reply.id, f"reply to {text} " + "." * j)
            await asyncio.sleep(random.uniform(0, 0.005))
        await store.finish_reply(sid, cid, reply.id, text=f"reply to {text}", finish_reason="stop",
                                 tokens=TurnTokens("m", (turn, 1), (2,)))

    await asyncio.gather(*(one_turn(i, *job) for i, job in enumerate(jobs)))
    reader = await backend.open()
    for sid, other in ((a.id, b.id), (b.id, a.id)):
        listed = {s.id for s in (await reader.list_conversations(sid, limit=100)).items}
        assert listed == set(conversations[sid])
        for cid in conversations[sid]:
            conversation = await reader.get_conversation(sid, cid)
            check_pairs(conversation, {f"{cid[:8]}/0", f"{cid[:8]}/1"}, lambda text: f"reply to {text}")
            assert await reader.get_conversation(other, cid) is None
    size = await reader.size()
    assert (size.sessions, size.conversations, size.messages) == (2, 10, 40)
    assert sum(conflicts.values()) > 0  # two turns of one conversation did meet


async def test_two_processes_writing_the_same_conversations(shared_backend):
    backend = shared_backend
    store = await backend.open()
    session = await store.create_session()
    cids = [(await store.create_conversation(session.id)).id for _ in range(3)]
    commands = [[sys.executable, str(WORKER), "turns", backend.url, session.id, name, "9", ",".join(cids)]
                for name in ("p1", "p2")]
    processes = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=worker_env())
                 for c in commands]
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()[-2000:]
        assert out.decode().strip() == "finished"
    for i, cid in enumerate(cids):
        conversation = await store.get_conversation(session.id, cid)
        expected = {f"{name}:{k}" for name in ("p1", "p2") for k in range(9) if k % 3 == i}
        check_pairs(conversation, expected, lambda text: full_reply(*text.split(":")[:1], int(text.split(":")[1])))
        for user, reply in zip(conversation.messages[0::2], conversation.messages[1::2], strict=True):
            k = int(user.text.split(":")[1])
            assert reply.tokens == TurnTokens("m", (k,), (k + 1,))
