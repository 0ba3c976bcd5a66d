"""Conversations: create, get, list, update, delete, clear, fork, export/import; ownership; on every backend."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from chatstream.conversations import (
    ConversationNotFound,
    InvalidCursor,
    InvalidId,
    MessageNotFound,
    ReplyClosed,
    TurnTokens,
    ValidationFailed,
)

pytestmark = pytest.mark.anyio


async def _turn(store, session_id, conversation_id, text, reply, tokens=None):
    opened = await store.begin_turn(session_id, conversation_id, text)
    return await store.finish_reply(session_id, conversation_id, opened.open_reply.id, text=reply,
                                    finish_reason="stop", tokens=tokens)


async def test_create_and_get(store):
    session = await store.create_session()
    created = await store.create_conversation(session.id, system="Be brief.")
    got = await store.get_conversation(session.id, created.id)
    assert got == created
    assert got.title == "" and got.system == "Be brief." and got.messages == ()
    assert got.session_id == session.id and got.created_at == got.updated_at


async def test_another_sessions_conversation_is_exactly_like_an_unknown_one(store):
    owner, other = await store.create_session(), await store.create_session()
    conversation = await store.create_conversation(owner.id)
    await _turn(store, owner.id, conversation.id, "secret question", "secret answer")
    unknown = str(uuid.uuid4())
    assert await store.get_conversation(other.id, conversation.id) is None
    assert await store.get_conversation(other.id, unknown) is None
    assert (await store.list_conversations(other.id)).items == ()
    calls = [
        lambda cid: store.begin_turn(other.id, cid, "hi"),
        lambda cid: store.update_conversation(other.id, cid, title="mine"),
        lambda cid: store.delete_conversation(other.id, cid),
        lambda cid: store.clear_conversation(other.id, cid),
        lambda cid: store.export_conversation(other.id, cid),
        lambda cid: store.regenerate(other.id, cid),
        lambda cid: store.update_reply(other.id, cid, str(uuid.uuid4()), "x"),
    ]
    for call in calls:
        with pytest.raises(ConversationNotFound) as foreign:
            await call(conversation.id)
        with pytest.raises(ConversationNotFound) as missing:
            await call(unknown)
        assert str(foreign.value).replace(conversation.id, "ID") == str(missing.value).replace(unknown, "ID")
    still = await store.get_conversation(owner.id, conversation.id)
    assert [m.text for m in still.messages] == ["secret question", "secret answer"]


@pytest.mark.parametrize("bad", ["42", "not-a-uuid", str(uuid.uuid4()).upper(), "", None, 7, "../etc/passwd"])
async def test_a_malformed_conversation_id_is_a_clear_error(store, bad):
    session = await store.create_session()
    with pytest.raises(InvalidId, match="conversation_id: must be a lowercase UUID") as caught:
        await store.get_conversation(session.id, bad)
    assert caught.value.field == "conversation_id"
    with pytest.raises(InvalidId):
        await store.begin_turn(session.id, bad, "hello")


async def test_list_is_newest_first_and_pages_with_a_cursor(store):
    session, other = await store.create_session(), await store.create_session()
    created = []
    for i in range(7):
        created.append(await store.create_conversation(session.id, title=f"c{i}"))
        await asyncio.sleep(0.002)
    await store.create_conversation(other.id)
    await _turn(store, session.id, created[2].id, "bump", "ok")  # activity moves c2 to the top
    seen, cursor, pages = [], None, 0
    while True:
        page = await store.list_conversations(session.id, limit=3, cursor=cursor)
        pages += 1
        seen.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert [s.id for s in seen] == [created[i].id for i in (2, 6, 5, 4, 3, 1, 0)]
    assert seen[0].num_messages == 2 and seen[1].num_messages == 0
    assert [s.updated_at for s in seen] == sorted((s.updated_at for s in seen), reverse=True)
    with pytest.raises(InvalidCursor):
        await store.list_conversations(session.id, cursor="bm90IGEgY3Vyc29y")
    with pytest.raises(ValidationFailed) as caught:
        await store.list_conversations(session.id, limit=0)
    assert caught.value.field == "limit"


async def test_equal_update_times_still_page_without_loss(store):
    session = await store.create_session()
    ids = {(await store.create_conversation(session.id)).id for _ in range(5)}
    seen, cursor = [], None
    while True:
        page = await store.list_conversations(session.id, limit=2, cursor=cursor)
        seen.extend(s.id for s in page.items)
        if (cursor := page.next_cursor) is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5


async def test_update_title_and_system(store):
    session = await store.create_session()
    conversation = await store.create_conversation(session.id)
    await _turn(store, session.id, conversation.id, "What is the capital of France?\nAnswer briefly.", "Paris.")
    assert (await store.get_conversation(session.id, conversation.id)).title == "What is the capital of France?"
    renamed = await store.update_conversation(session.id, conversation.id, title="Geography")
    assert renamed.title == "Geography" and renamed.system == ""
    changed = await store.update_conversation(session.id, conversation.id, system="You are a tutor.")
    assert changed.title == "Geography" and changed.system == "You are a tutor."
    await _turn(store, session.id, conversation.id, "And Spain?", "Madrid.")
    assert (await store.get_conversation(session.id, conversation.id)).title == "Geography"  # an edited title stays
    with pytest.raises(ValidationFailed) as caught:
        await store.update_conversation(session.id, conversation.id, title="t" * 201)
    assert caught.value.field == "title"


async def test_delete(store):
    session = await store.create_session()
    keep, gone = await store.create_conversation(session.id), await store.create_conversation(session.id)
    await _turn(store, session.id, gone.id, "q", "a")
    assert (await store.size()).conversations == 2
    await store.delete_conversation(session.id, gone.id)
    assert await store.get_conversation(session.id, gone.id) is None
    assert [s.id for s in (await store.list_conversations(session.id)).items] == [keep.id]
    size = await store.size()
    assert (size.conversations, size.messages) == (1, 0)
    with pytest.raises(ConversationNotFound):
        await store.delete_conversation(session.id, gone.id)


async def test_clear_keeps_title_and_system_and_closes_an_open_reply(store):
    session = await store.create_session()
    conversation = await store.create_conversation(session.id, title="Kept", system="sys")
    await _turn(store, session.id, conversation.id, "one", "1")
    opened = await store.begin_turn(session.id, conversation.id, "two")
    cleared = await store.clear_conversation(session.id, conversation.id)
    assert cleared.messages == () and (cleared.title, cleared.system) == ("Kept", "sys")
    with pytest.raises(ReplyClosed):
        await store.update_reply(session.id, conversation.id, opened.open_reply.id, "late")
    with pytest.raises(ReplyClosed):
        await store.finish_reply(session.id, conversation.id, opened.open_reply.id, text="late")
    assert (await store.get_conversation(session.id, conversation.id)).messages == ()
    after = await _turn(store, session.id, conversation.id, "three", "3")
    assert [m.text for m in after.messages] == ["three", "3"]


async def test_fork_before_a_user_message_copies_what_came_before(store):
    session = await store.create_session()
    conversation = await store.create_conversation(session.id, system="sys")
    await _turn(store, session.id, conversation.id, "q1", "a1", TurnTokens("m", (1, 2), (3,)))
    full = await _turn(store, session.id, conversation.id, "q2", "a2", TurnTokens("m", (1, 2, 3, 4), (5,)))
    fork = await store.fork_conversation(session.id, conversation.id, full.messages[2].id)
    assert fork.id != conversation.id and fork.system == "sys" and fork.title == full.title
    assert [m.text for m in fork.messages] == ["q1", "a1"]
    assert {m.id for m in fork.messages}.isdisjoint(m.id for m in full.messages)
    assert fork.messages[1].tokens == TurnTokens("m", (1, 2), (3,))
    assert await store.get_conversation(session.id, fork.id) == fork
    edited = await store.begin_turn(session.id, fork.id, "q2, edited")
    assert [m.text for m in edited.messages[:3]] == ["q1", "a1", "q2, edited"]
    assert len((await store.get_conversation(session.id, conversation.id)).messages) == 4  # the source stays
    with pytest.raises(ValidationFailed) as caught:
        await store.fork_conversation(session.id, conversation.id, full.messages[1].id)
    assert caught.value.field == "before_message_id"
    with pytest.raises(MessageNotFound):
        await store.fork_conversation(session.id, conversation.id, str(uuid.uuid4()))


async def test_export_then_import_round_trips_everything_but_ids(store):
    session, other = await store.create_session(), await store.create_session()
    conversation = await store.create_conversation(session.id, title="T", system="S")
    await _turn(store, session.id, conversation.id, "q1", "a1", TurnTokens("m", (1, 2), (3, 4)))
    await _turn(store, session.id, conversation.id, "q2", "a2 ünïcödé", TurnTokens("m", (1, 2, 3, 4, 9), (7,)))
    source = await store.get_conversation(session.id, conversation.id)
    exported = await store.export_conversation(session.id, conversation.id)
    text = json.dumps(exported)
    assert session.id not in text
    imported = await store.import_conversation(other.id, text)
    assert imported.id != conversation.id and imported.session_id == other.id
    assert (imported.title, imported.system, imported.created_at) == ("T", "S", source.created_at)
    assert imported.messages == source.messages
    assert await store.get_conversation(other.id, imported.id) == imported
    assert [s.id for s in (await store.list_conversations(other.id)).items] == [imported.id]
    again = await store.export_conversation(other.id, imported.id)
    assert {k: v for k, v in again.items() if k not in ("id", "updated_at")} == \
        {k: v for k, v in exported.items() if k not in ("id", "updated_at")}


async def test_an_imported_streaming_reply_becomes_interrupted(store):
    session = await store.create_session()
    conversation = await store.create_conversation(session.id)
    opened = await store.begin_turn(session.id, conversation.id, "q")
    await store.update_reply(session.id, conversation.id, opened.open_reply.id, "half an ans")
    exported = await store.export_conversation(session.id, conversation.id)
    assert exported["messages"][1]["status"] == "streaming"
    imported = await store.import_conversation(session.id, exported)
    assert imported.messages[1].status == "interrupted" and imported.messages[1].text == "half an ans"
    assert imported.open_reply is None
    await store.begin_turn(session.id, imported.id, "next")  # nothing open blocks it
