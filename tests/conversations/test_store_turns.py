"""Turns: begin, stream, finish, regenerate, discard, feedback, leases; on every backend."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from chatstream.conversations import (
    Feedback,
    MessageNotFound,
    NothingToRegenerate,
    ReplyClosed,
    ReplyStats,
    StoreOptions,
    TurnInProgress,
    TurnTokens,
    ValidationFailed,
)

pytestmark = pytest.mark.anyio


async def _new(store):
    session = await store.create_session()
    return session.id, (await store.create_conversation(session.id)).id


async def test_a_turn_opens_streams_and_finishes(store):
    sid, cid = await _new(store)
    opened = await store.begin_turn(sid, cid, "Hello")
    user, reply = opened.messages
    assert (user.role, user.text, user.status) == ("user", "Hello", "complete")
    assert (reply.role, reply.text, reply.status) == ("assistant", "", "streaming")
    assert opened.open_reply == reply and opened.title == "Hello"
    with pytest.raises(TurnInProgress):
        await store.begin_turn(sid, cid, "again")
    with pytest.raises(TurnInProgress):
        await store.regenerate(sid, cid)
    for partial in ("Hi", "Hi the", "Hi there"):
        await store.update_reply(sid, cid, reply.id, partial)
        seen = await store.get_conversation(sid, cid)
        assert seen.messages[-1].text == partial and seen.messages[-1].status == "streaming"
    tokens = TurnTokens("smollm2", (1, 2, 3), (4, 5, 6))
    stats = ReplyStats(prompt_tokens=3, cached_tokens=0, completion_tokens=3, time_to_first_token_s=0.05,
                       tokens_per_s=40.0)
    done = await store.finish_reply(sid, cid, reply.id, text="Hi there!", finish_reason="stop", tokens=tokens,
                                    stats=stats)
    assert done.open_reply is None and done.updated_at > opened.created_at
    assert await store.get_conversation(sid, cid) == done
    final = done.messages[-1]
    assert (final.id, final.text, final.status, final.finish_reason) == (reply.id, "Hi there!", "complete", "stop")
    assert final.tokens == tokens and final.stats == stats
    with pytest.raises(ReplyClosed):
        await store.update_reply(sid, cid, reply.id, "more")
    with pytest.raises(ReplyClosed):
        await store.finish_reply(sid, cid, reply.id, text="again")
    with pytest.raises(ReplyClosed):
        await store.update_reply(sid, cid, str(uuid.uuid4()), "never opened")


async def test_token_ids_of_every_turn_come_back_exactly(store):
    sid, cid = await _new(store)
    turns = [
        TurnTokens("m", (1, 2, 3), (4, 0)),
        TurnTokens("m", (1, 2, 3, 4, 0, 7, 8), (9, 0)),  # continues the previous turn
        TurnTokens("m", (1, 2, 5, 7), (11,)),  # re-rendered: does not continue it
        TurnTokens("other", (1, 2, 5, 7, 11, 12), (2**32 - 1,)),  # another model
        TurnTokens("other", (1, 2, 5, 7, 11, 12, 2**32 - 1), ()),  # continues, empty output
    ]
    for i, tokens in enumerate(turns):
        opened = await store.begin_turn(sid, cid, f"q{i}")
        await store.finish_reply(sid, cid, opened.open_reply.id, text=f"a{i}", tokens=tokens)
    got = await store.get_conversation(sid, cid)
    assert [m.tokens for m in got.messages[1::2]] == turns
    assert all(m.tokens is None for m in got.messages[0::2])
    assert got.last_tokens == turns[-1]
    light = await store.get_conversation(sid, cid, include_tokens=False)
    assert all(m.tokens is None for m in light.messages) and [m.text for m in light.messages] == \
        [m.text for m in got.messages]
    regenerated = await store.regenerate(sid, cid)
    assert regenerated.last_tokens == turns[-2]
    finished = await store.finish_reply(sid, cid, regenerated.open_reply.id, text="b", tokens=turns[-1])
    assert [m.tokens for m in finished.messages[1::2]] == turns
    assert (await store.get_conversation(sid, cid)).messages == finished.messages


async def test_regenerate_replaces_the_last_reply(store):
    sid, cid = await _new(store)
    with pytest.raises(NothingToRegenerate):
        await store.regenerate(sid, cid)
    opened = await store.begin_turn(sid, cid, "Tell a joke")
    first = await store.finish_reply(sid, cid, opened.open_reply.id, text="joke one", finish_reason="stop")
    again = await store.regenerate(sid, cid)
    assert [m.text for m in again.messages] == ["Tell a joke", ""]
    assert again.open_reply.id != first.messages[-1].id and again.messages[0] == first.messages[0]
    done = await store.finish_reply(sid, cid, again.open_reply.id, text="joke two")
    assert [m.text for m in done.messages] == ["Tell a joke", "joke two"]


async def test_discard_removes_a_turn_that_never_started(store):
    sid, cid = await _new(store)
    opened = await store.begin_turn(sid, cid, "one")
    await store.finish_reply(sid, cid, opened.open_reply.id, text="1")
    opened = await store.begin_turn(sid, cid, "two")
    discarded = await store.discard_turn(sid, cid, opened.open_reply.id)
    assert [m.text for m in discarded.messages] == ["one", "1"]
    assert await store.get_conversation(sid, cid) == discarded
    with pytest.raises(ReplyClosed):
        await store.discard_turn(sid, cid, discarded.messages[-1].id)


async def test_interrupted_finish_keeps_the_partial_text(store):
    sid, cid = await _new(store)
    opened = await store.begin_turn(sid, cid, "long story")
    await store.update_reply(sid, cid, opened.open_reply.id, "Once upon")
    done = await store.finish_reply(sid, cid, opened.open_reply.id, text="Once upon a", finish_reason="abort",
                                    interrupted=True)
    assert (done.messages[-1].status, done.messages[-1].text) == ("interrupted", "Once upon a")
    await store.begin_turn(sid, cid, "go on")


async def test_feedback_on_a_reply(store):
    sid, cid = await _new(store)
    other = await store.create_conversation(sid)
    opened = await store.begin_turn(sid, cid, "q")
    done = await store.finish_reply(sid, cid, opened.open_reply.id, text="a")
    reply_id = done.messages[1].id
    liked = await store.set_feedback(sid, cid, reply_id, Feedback(True, {"comment": "good", "stars": 5}))
    assert liked.feedback == Feedback(True, {"comment": "good", "stars": 5}) and liked.text == "a"
    got = await store.get_conversation(sid, cid)
    assert got.messages[1].feedback == liked.feedback and got.updated_at == done.updated_at
    page = await store.list_conversations(sid)
    assert [s.id for s in page.items][0] == cid  # feedback is not activity: the order comes from the turn
    assert (await store.set_feedback(sid, cid, reply_id, None)).feedback is None
    with pytest.raises(ValidationFailed) as caught:
        await store.set_feedback(sid, cid, done.messages[0].id, Feedback(False))
    assert caught.value.field == "message_id"
    with pytest.raises(MessageNotFound):
        await store.set_feedback(sid, other.id, reply_id, Feedback(False))
    with pytest.raises(ValidationFailed) as caught:
        await store.set_feedback(sid, cid, reply_id, Feedback(True, {"x": "y" * 20_000}))
    assert caught.value.field == "feedback.form_data"


async def test_a_reply_whose_writer_stopped_reads_as_interrupted_after_its_lease(backend):
    store = await backend.open(StoreOptions(reply_lease_s=0.4))
    sid, cid = await _new(store)
    opened = await store.begin_turn(sid, cid, "q")
    reply_id = opened.open_reply.id
    for _ in range(6):  # a writer that keeps writing keeps its reply open
        await asyncio.sleep(0.1)
        await store.update_reply(sid, cid, reply_id, "partial")
        assert (await store.get_conversation(sid, cid)).messages[-1].status == "streaming"
    await asyncio.sleep(0.6)  # then it stops (crashed)
    seen = await store.get_conversation(sid, cid)
    assert (seen.messages[-1].status, seen.messages[-1].text) == ("interrupted", "partial")
    assert seen.open_reply is None
    assert (await store.export_conversation(sid, cid))["messages"][1]["status"] == "interrupted"
    nxt = await store.begin_turn(sid, cid, "q2")  # allowed, and the old reply is stored as interrupted
    assert [m.status for m in nxt.messages] == ["complete", "interrupted", "complete", "streaming"]
    with pytest.raises(ReplyClosed):
        await store.update_reply(sid, cid, reply_id, "too late")


async def test_a_slow_writer_may_still_finish_if_nothing_else_happened(backend):
    store = await backend.open(StoreOptions(reply_lease_s=0.2))
    sid, cid = await _new(store)
    opened = await store.begin_turn(sid, cid, "q")
    await asyncio.sleep(0.3)
    assert (await store.get_conversation(sid, cid)).messages[-1].status == "interrupted"
    done = await store.finish_reply(sid, cid, opened.open_reply.id, text="late but whole")
    assert done.messages[-1].status == "complete"


@pytest.mark.parametrize(("call", "field"), [
    (lambda s, sid, cid, rid: s.begin_turn(sid, cid, "   "), "user_text"),
    (lambda s, sid, cid, rid: s.begin_turn(sid, cid, None), "user_text"),
    (lambda s, sid, cid, rid: s.update_reply(sid, cid, rid, b"bytes"), "text"),
    (lambda s, sid, cid, rid: s.update_reply(sid, cid, "nope", "x"), "reply_id"),
    (lambda s, sid, cid, rid: s.finish_reply(sid, cid, rid, text="x", tokens=TurnTokens("m", (1, -2), ())),
     "tokens.prompt_token_ids[1]"),
    (lambda s, sid, cid, rid: s.finish_reply(sid, cid, rid, text="x", tokens=TurnTokens("m", (1,), (2**32,))),
     "tokens.output_token_ids[0]"),
    (lambda s, sid, cid, rid: s.finish_reply(sid, cid, rid, text="x", tokens=TurnTokens("", (1,), ())),
     "tokens.model_id"),
    (lambda s, sid, cid, rid: s.finish_reply(sid, cid, rid, text="x", stats=ReplyStats(prompt_tokens=-1)),
     "stats.prompt_tokens"),
    (lambda s, sid, cid, rid: s.finish_reply(sid, cid, rid, text="x", stats=ReplyStats(tokens_per_s=float("inf"))),
     "stats.tokens_per_s"),
    (lambda s, sid, cid, rid: s.finish_reply(sid, cid, rid, text="x", finish_reason="r" * 100), "finish_reason"),
])
async def test_bad_turn_input_is_refused_naming_the_field_and_changes_nothing(store, call, field):
    sid, cid = await _new(store)
    opened = await store.begin_turn(sid, cid, "q")
    before = await store.get_conversation(sid, cid)
    with pytest.raises(ValidationFailed) as caught:
        await call(store, sid, cid, opened.open_reply.id)
    assert caught.value.field == field, str(caught.value)
    assert await store.get_conversation(sid, cid) == before
