"""What survives: a closed and reopened store, a restarted redis-server, and `kill -9` of an SQLite writer."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_worker import full_reply
from test_store_concurrency import WORKER, worker_env

from chatstream.conversations import ReplyStats, StoreOptions, TurnTokens, open_store

pytestmark = pytest.mark.anyio


async def _write_history(store):
    session = await store.create_session()
    await store.update_session(session.id, client_role="user", generation_params={"temperature": 0.3})
    conversation = await store.create_conversation(session.id, system="sys")
    await store.update_session(session.id, current_conversation_id=conversation.id)
    for k in range(3):
        opened = await store.begin_turn(session.id, conversation.id, f"q{k}")
        await store.finish_reply(session.id, conversation.id, opened.open_reply.id, text=f"a{k}",
                                 finish_reason="stop", tokens=TurnTokens("m", tuple(range(4 * k + 3)), (9,)),
                                 stats=ReplyStats(prompt_tokens=4 * k + 3, completion_tokens=1))
    opened = await store.begin_turn(session.id, conversation.id, "q3")
    await store.update_reply(session.id, conversation.id, opened.open_reply.id, "half")
    return session.id, await store.get_conversation(session.id, conversation.id)


async def test_a_reopened_store_has_everything(shared_backend):
    first = await shared_backend.open(StoreOptions(reply_lease_s=0.3))
    sid, before = await _write_history(first)
    session_before = await first.get_session(sid)
    await first.close()
    again = await open_store(shared_backend.url, StoreOptions(reply_lease_s=0.3))
    try:
        assert await again.get_session(sid) == session_before
        assert await again.get_conversation(sid, before.id) == before
        time.sleep(0.4)  # the writer is gone: its open reply reads as interrupted, text kept
        after = await again.get_conversation(sid, before.id)
        assert (after.messages[-1].status, after.messages[-1].text) == ("interrupted", "half")
        assert after.messages[:-1] == before.messages[:-1]
    finally:
        await again.close()


async def test_redis_data_survive_a_redis_server_restart(redis_server_factory):
    server = redis_server_factory(persistent=True)
    store = await open_store(server.url(3))
    sid, before = await _write_history(store)
    server.restart()
    assert await store.get_conversation(sid, before.id) == before  # the same client reconnects by itself
    await store.close()


def _start_loop_writer(url: str, session_id: str, conversation_id: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(WORKER), "loop", url, session_id, conversation_id, "0.3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=worker_env())


async def test_kill_9_during_a_streamed_reply_loses_nothing_but_that_reply(tmp_path: Path):
    path = tmp_path / "chats.sqlite3"
    url = f"sqlite:///{path}"
    store = await open_store(url)
    session = await store.create_session()
    conversation = await store.create_conversation(session.id)
    await store.close()
    completed = 0  # turns reported stored, over all rounds
    for _ in range(3):  # kill it three times, each time mid-reply, and go on with the same file
        writer = _start_loop_writer(url, session.id, conversation.id)
        done_in_round, turn = 0, None
        assert writer.stdout is not None
        for line in writer.stdout:
            word, k = line.decode().split()
            if word == "done":
                done_in_round += 1
            elif done_in_round >= 2:  # two whole turns stored in this round, a third streaming: kill
                turn = int(k)
                writer.send_signal(signal.SIGKILL)
                break
        writer.wait(30)
        assert turn is not None, writer.stderr.read().decode()[-2000:] if writer.stderr else ""
        assert writer.returncode == -signal.SIGKILL
        completed += done_in_round

        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
        reopened = await open_store(url)
        try:
            seen = await reopened.get_conversation(session.id, conversation.id)
            deadline = time.monotonic() + 5
            while seen.messages[-1].status == "streaming" and time.monotonic() < deadline:
                time.sleep(0.1)  # the killed writer's lease (0.3 s) runs out
                seen = await reopened.get_conversation(session.id, conversation.id)
            replies = seen.messages[1::2]
            whole = [m for m in replies if m.status == "complete"]
            assert len(whole) == completed
            pairs = zip(seen.messages[0::2], replies, strict=True)
            assert [m.text for m in whole] == [full_reply("loop", int(u.text.split()[1]))
                                              for u, m in pairs if m.status == "complete"]
            last = seen.messages[-1]
            assert seen.messages[-2].text == f"question {turn}"
            assert last.status == "interrupted" and last.text and full_reply("loop", turn).startswith(last.text)
            assert (await reopened.size()).messages == len(seen.messages)
        finally:
            await reopened.close()
