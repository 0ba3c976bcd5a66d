"""A backend that can't be reached raises `StoreUnavailable` (the server's 503), and recovers."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from chatstream.conversations import StoreUnavailable, open_store

pytestmark = pytest.mark.anyio


async def test_redis_down_raises_store_unavailable_for_every_call_and_recovers(redis_server_factory):
    server = redis_server_factory()
    store = await open_store(server.url() + "?prefix=down")
    session = await store.create_session()
    conversation = await store.create_conversation(session.id)
    opened = await store.begin_turn(session.id, conversation.id, "q")
    server.stop()
    sid, cid, rid = session.id, conversation.id, opened.open_reply.id
    calls = {
        "ping": lambda: store.ping(),
        "create_session": lambda: store.create_session(),
        "touch_session": lambda: store.touch_session(sid),
        "update_session": lambda: store.update_session(sid, client_role="user"),
        "create_conversation": lambda: store.create_conversation(sid),
        "get_conversation": lambda: store.get_conversation(sid, cid),
        "list_conversations": lambda: store.list_conversations(sid),
        "update_reply": lambda: store.update_reply(sid, cid, rid, "more"),
        "finish_reply": lambda: store.finish_reply(sid, cid, rid, text="done"),
        "begin_turn": lambda: store.begin_turn(sid, cid, "q2"),
        "delete_conversation": lambda: store.delete_conversation(sid, cid),
        "import_conversation": lambda: store.import_conversation(sid, {
            "format": "chatstream.conversation", "version": 1, "created_at": 1.0, "updated_at": 1.0}),
        "size": lambda: store.size(),
    }
    for name, call in calls.items():
        with pytest.raises(StoreUnavailable, match="redis conversation store redis://127.0.0.1") as caught:
            await call()
        assert "Connect" in str(caught.value) or "connect" in str(caught.value), name
    server.restart()  # not persistent: the data are gone, the store works again
    assert await store.get_conversation(sid, cid) is None
    fresh = await store.create_session()
    assert await store.get_session(fresh.id) is not None
    await store.close()


async def test_a_store_opened_while_redis_is_down_starts_and_fails_per_call(redis_server_factory):
    server = redis_server_factory()
    server.stop()
    store = await open_store(server.url())  # a server that starts without Redis still serves the rest
    with pytest.raises(StoreUnavailable):
        await store.get_session("s" * 32)
    await store.close()


async def test_redis_password_never_shows_in_errors(redis_server_factory):
    server = redis_server_factory()
    server.stop()
    store = await open_store(f"redis://:hunter2-secret@127.0.0.1:{server.port}/0")
    with pytest.raises(StoreUnavailable) as caught:
        await store.ping()
    assert "hunter2" not in str(caught.value) and "hunter2" not in repr(store)
    await store.close()


@pytest.mark.parametrize("make_bad_path", [
    lambda tmp: tmp / "a-file" / "chats.sqlite3",  # its parent is a file
    lambda tmp: tmp,  # a directory
    lambda tmp: tmp / "garbage.sqlite3",  # not a database
])
async def test_an_unusable_sqlite_path_fails_at_open_with_store_unavailable(tmp_path: Path, make_bad_path):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "garbage.sqlite3").write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(StoreUnavailable, match="sqlite conversation store"):
        await open_store(f"sqlite:///{make_bad_path(tmp_path)}")


async def test_a_closed_store_is_unavailable(tmp_path: Path):
    store = await open_store(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    await store.close()
    await store.close()  # twice is fine
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.get_conversation("s" * 32, str(uuid.uuid4()))
