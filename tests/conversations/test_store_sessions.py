"""Sessions: create, get, touch, update, idle expiry; on every backend."""

from __future__ import annotations

import asyncio

import pytest

from chatstream.conversations import InvalidId, SessionNotFound, StoreOptions, ValidationFailed

pytestmark = pytest.mark.anyio


async def test_a_new_session_is_found_and_an_unknown_one_is_not(store):
    first, second = await store.create_session(), await store.create_session()
    assert first.id != second.id
    got = await store.get_session(first.id)
    assert got is not None and got.id == first.id and got.current_conversation_id is None
    assert got.client_role is None and dict(got.generation_params) == {}
    assert await store.get_session("x" * 32) is None
    assert (await store.size()).sessions == 2


async def test_touch_moves_last_seen_and_get_does_not(store):
    session = await store.create_session()
    await asyncio.sleep(0.01)
    assert (await store.get_session(session.id)).last_seen_at == session.last_seen_at
    touched = await store.touch_session(session.id)
    assert touched.last_seen_at > session.last_seen_at and touched.created_at == session.created_at
    assert await store.touch_session("y" * 32) is None


async def test_create_with_a_given_id_keeps_an_existing_sessions_data(store):
    session = await store.create_session("cookie-session-id-0001")
    await store.update_session(session.id, client_role="admin")
    again = await store.create_session("cookie-session-id-0001")
    assert again.client_role == "admin" and again.created_at == session.created_at


async def test_update_sets_and_clears_fields(store):
    session = await store.create_session()
    conversation = await store.create_conversation(session.id)
    updated = await store.update_session(session.id, current_conversation_id=conversation.id, client_role="user",
                                         generation_params={"temperature": 0.5, "top_k_value": 40})
    assert updated.current_conversation_id == conversation.id and updated.client_role == "user"
    assert dict(updated.generation_params) == {"temperature": 0.5, "top_k_value": 40}
    again = await store.get_session(session.id)
    assert again == updated
    cleared = await store.update_session(session.id, client_role=None)
    assert cleared.client_role is None and cleared.current_conversation_id == conversation.id
    with pytest.raises(SessionNotFound):
        await store.update_session("z" * 32, client_role="user")


@pytest.mark.parametrize(("changes", "field"), [
    ({"current_conversation_id": "not-a-uuid"}, "current_conversation_id"),
    ({"client_role": "r" * 65}, "client_role"),
    ({"generation_params": {"temperature": [1]}}, "generation_params.temperature"),
    ({"generation_params": {"top_p": float("nan")}}, "generation_params.top_p"),
    ({"generation_params": "hot"}, "generation_params"),
])
async def test_bad_session_data_is_refused_naming_the_field(store, changes, field):
    session = await store.create_session()
    with pytest.raises(ValidationFailed) as caught:
        await store.update_session(session.id, **changes)
    assert caught.value.field == field


@pytest.mark.parametrize("bad", ["short", "has space in it 12345", "", 42, None, "ü" * 20])
async def test_a_malformed_session_id_is_invalid_and_never_echoed(store, bad):
    with pytest.raises(InvalidId) as caught:
        await store.get_session(bad)
    assert caught.value.field == "session_id"
    if isinstance(bad, str) and bad:
        assert bad not in str(caught.value)


async def test_idle_sessions_expire_and_touched_ones_stay(backend):
    store = await backend.open(StoreOptions(session_ttl_s=0.6))
    idle, active = await store.create_session(), await store.create_session()
    for _ in range(4):
        await asyncio.sleep(0.25)
        assert await store.touch_session(active.id) is not None
    assert await store.get_session(idle.id) is None
    assert await store.touch_session(idle.id) is None
    assert (await store.size()).sessions == 1
    with pytest.raises(SessionNotFound):
        await store.update_session(idle.id, client_role="user")
