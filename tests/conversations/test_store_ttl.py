"""Conversation TTL: a conversation not updated for `conversation_ttl_s` is gone; on every backend."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from chatstream.conversations import ConversationNotFound, StoreOptions, open_store

pytestmark = pytest.mark.anyio


async def test_idle_conversations_expire_and_active_ones_stay(backend):
    store = await backend.open(StoreOptions(conversation_ttl_s=0.8))
    session = await store.create_session()
    idle = await store.create_conversation(session.id)
    active = await store.create_conversation(session.id)
    opened = await store.begin_turn(session.id, idle.id, "q")
    await store.finish_reply(session.id, idle.id, opened.open_reply.id, text="a")
    for _ in range(3):
        await asyncio.sleep(0.4)
        opened = await store.begin_turn(session.id, active.id, "still here")
        await store.finish_reply(session.id, active.id, opened.open_reply.id, text="yes")
    assert await store.get_conversation(session.id, idle.id) is None
    assert [s.id for s in (await store.list_conversations(session.id)).items] == [active.id]
    with pytest.raises(ConversationNotFound):
        await store.begin_turn(session.id, idle.id, "too late")
    with pytest.raises(ConversationNotFound):
        await store.delete_conversation(session.id, idle.id)
    size = await store.size()
    assert (size.conversations, size.messages) == (1, 6)
    await asyncio.sleep(0.9)
    assert await store.get_conversation(session.id, active.id) is None
    assert (await store.list_conversations(session.id)).items == ()
    size = await store.size()
    assert (size.conversations, size.messages) == (0, 0)


async def test_an_expired_conversations_open_reply_is_gone_for_its_writer(backend):
    store = await backend.open(StoreOptions(conversation_ttl_s=0.3, reply_lease_s=5))
    session = await store.create_session()
    conversation = await store.create_conversation(session.id)
    opened = await store.begin_turn(session.id, conversation.id, "q")
    await asyncio.sleep(0.5)
    with pytest.raises(ConversationNotFound):
        await store.update_reply(session.id, conversation.id, opened.open_reply.id, "x")
    with pytest.raises(ConversationNotFound):
        await store.finish_reply(session.id, conversation.id, opened.open_reply.id, text="x")


async def test_sqlite_deletes_what_expired_when_it_opens(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    store = await open_store(url)
    session = await store.create_session()
    for _ in range(3):
        conversation = await store.create_conversation(session.id)
        opened = await store.begin_turn(session.id, conversation.id, "q")
        await store.finish_reply(session.id, conversation.id, opened.open_reply.id, text="a")
    await store.close()
    await asyncio.sleep(0.3)
    reopened = await open_store(url, StoreOptions(conversation_ttl_s=0.2, session_ttl_s=0.2))
    rows = sqlite3.connect(tmp_path / "c.sqlite3")
    counts = [rows.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
              for table in ("sessions", "conversations", "messages")]
    assert counts == [0, 0, 0]
    await reopened.close()
