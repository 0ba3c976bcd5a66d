"""A malformed import is refused with every problem named, and nothing is stored."""

from __future__ import annotations

import copy
import json
import uuid

import pytest

from chatstream.conversations import ValidationFailed, open_store

pytestmark = pytest.mark.anyio


def _valid() -> dict:
    ids = [str(uuid.uuid4()) for _ in range(4)]
    return {
        "format": "chatstream.conversation", "version": 1, "title": "t", "system": "s",
        "created_at": 1_700_000_000.0, "updated_at": 1_700_000_100.0,
        "messages": [
            {"id": ids[0], "role": "user", "text": "q1", "created_at": 1_700_000_000.5},
            {"id": ids[1], "role": "assistant", "text": "a1", "created_at": 1_700_000_001.0,
             "finish_reason": "stop", "feedback": {"is_like": True, "form_data": {"c": [1, 2]}},
             "stats": {"prompt_tokens": 3, "tokens_per_s": 12.5},
             "tokens": {"model_id": "m", "prompt_token_ids": [1, 2, 3], "output_token_ids": [4]}},
            {"id": ids[2], "role": "user", "text": "q2", "created_at": 1_700_000_002.0},
            {"id": ids[3], "role": "assistant", "text": "a2", "created_at": 1_700_000_003.0, "status": "interrupted"},
        ],
    }


def _with(path: str, value) -> dict:
    doc = _valid()
    node = doc
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if value is KeyError:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


def _swap_roles() -> dict:
    doc = _valid()
    doc["messages"][0]["role"], doc["messages"][1]["role"] = "assistant", "user"
    doc["messages"][1].pop("feedback"), doc["messages"][1].pop("stats"), doc["messages"][1].pop("tokens")
    doc["messages"][1].pop("finish_reason")
    return doc


def _duplicate_ids() -> dict:
    doc = _valid()
    doc["messages"][2]["id"] = doc["messages"][0]["id"]
    return doc


def _unanswered() -> dict:
    doc = _valid()
    doc["messages"].pop()
    return doc


MALFORMED = [
    ("not json {", None, "not valid JSON"),
    ("[1, 2]", None, "must be a JSON object"),
    (_with("format", "something.else"), "format", "chatstream.conversation"),
    (_with("version", 2), "version", "1"),
    (_with("created_at", KeyError), "created_at", "required"),
    (_with("created_at", "yesterday"), "created_at", "number"),
    (_with("surprise", 1), "surprise", "Extra inputs"),
    (_with("title", "x" * 201), "title", "200"),
    (_with("messages.0.role", "system"), "messages[0].role", "'user' or 'assistant'"),
    (_with("messages.0.id", "m-1"), "messages[0].id", "pattern"),
    (_with("messages.0.text", 5), "messages[0].text", "string"),
    (_with("messages.1.status", "done"), "messages[1].status", "'complete', 'streaming' or 'interrupted'"),
    (_with("messages.1.tokens.prompt_token_ids", [1, -1]), "messages[1].tokens.prompt_token_ids[1]", "greater"),
    (_with("messages.1.tokens.output_token_ids", [1.5]), "messages[1].tokens.output_token_ids[0]", "integer"),
    (_with("messages.1.tokens.output_token_ids", ["7"]), "messages[1].tokens.output_token_ids[0]", "integer"),
    (_with("messages.1.feedback.is_like", "yes"), "messages[1].feedback.is_like", "boolean"),
    (_with("messages.1.stats.prompt_tokens", -3), "messages[1].stats.prompt_tokens", "greater"),
    (_with("messages.0.feedback", {"is_like": True}), "messages[0].feedback", "only replies"),
    (_with("messages.0.status", "interrupted"), "messages[0].status", "user messages are 'complete'"),
    (_swap_roles(), "messages[0].role", "must be 'user'"),
    (_duplicate_ids(), "messages[2].id", "duplicates messages[0].id"),
    (_unanswered(), "messages", "has no reply"),
]


async def test_a_valid_import_is_accepted():
    store = await open_store("memory")
    session = await store.create_session()
    imported = await store.import_conversation(session.id, json.dumps(_valid()))
    assert [m.text for m in imported.messages] == ["q1", "a1", "q2", "a2"]
    assert imported.messages[1].tokens.prompt_token_ids == (1, 2, 3)
    assert imported.messages[1].feedback.form_data == {"c": [1, 2]}


@pytest.mark.parametrize(("doc", "field", "words"), MALFORMED, ids=[str(m[1]) + "-" + str(i) for i, m in
                                                                     enumerate(MALFORMED)])
async def test_a_malformed_import_names_the_problem(backend, doc, field, words):
    store = await backend.open()
    session = await store.create_session()
    with pytest.raises(ValidationFailed) as caught:
        await store.import_conversation(session.id, doc if isinstance(doc, str) else copy.deepcopy(doc))
    fields = [p.field for p in caught.value.problems]
    assert field in fields, str(caught.value)
    assert words in str(caught.value), str(caught.value)
    assert str(caught.value).startswith("invalid conversation import: ")
    assert (await store.size()).conversations == 0


async def test_every_problem_is_listed():
    store = await open_store("memory")
    session = await store.create_session()
    doc = _with("messages.0.role", "robot")
    doc["messages"][2]["text"] = None
    with pytest.raises(ValidationFailed) as caught:
        await store.import_conversation(session.id, doc)
    assert {p.field for p in caught.value.problems} == {"messages[0].role", "messages[2].text"}
