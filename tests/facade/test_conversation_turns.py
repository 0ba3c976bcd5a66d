"""Turns of a stored conversation on a real engine (a tiny model): every earlier turn comes from the
prefix cache because each prompt continues the previous reply's stored ids; the store keeps each
turn's exact ids and figures; and the prompt is re-rendered where stored ids can't be used."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from chatstream import ChatPromptChatTemplate, ChatStream
from chatstream.conversations import Conversation

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|endoftext|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
QUESTIONS = ["hello there", "the quick brown fox", "once upon a time", "the dog sleeps in the sun", "a cache keeps"]
BLOCK_SIZE = 16


@pytest.fixture
def chat_stream(tiny_model_factory) -> Iterator[ChatStream]:
    model, tokenizer = tiny_model_factory("llama")
    tokenizer.chat_template = CHATML
    chat_stream = ChatStream(model=model, tokenizer=tokenizer, chat_prompt_clazz=ChatPromptChatTemplate,
                             temperature=0.0, max_new_tokens=12, context_len=512, num_kv_blocks=128,
                             block_size=BLOCK_SIZE)
    yield chat_stream
    chat_stream.shutdown()


def _turn(chat_stream: ChatStream, text: str):
    async def run() -> None:
        async for _ in chat_stream.handle_console_input(text):
            pass

    asyncio.run(run())
    return chat_stream.chat_generator.records[-1]


def _stored(chat_stream: ChatStream) -> Conversation:
    console = chat_stream.console
    store = chat_stream.conversations.store
    assert store is not None and console.session_id and console.conversation_id
    conversation = asyncio.run(store.get_conversation(console.session_id, console.conversation_id))
    assert conversation is not None
    return conversation


def test_each_turn_continues_the_stored_ids_and_finds_them_cached(chat_stream: ChatStream) -> None:
    records = [_turn(chat_stream, question) for question in QUESTIONS]
    conversation = _stored(chat_stream)
    replies = [m for m in conversation.messages if m.role == "assistant"]
    assert [m.status for m in replies] == ["complete"] * len(QUESTIONS)
    for record, reply in zip(records, replies):
        # The store keeps exactly what the engine saw and wrote, and the figures.
        assert reply.tokens is not None
        assert reply.tokens.prompt_token_ids == record.prompt_token_ids
        assert reply.tokens.output_token_ids == record.output_token_ids
        assert reply.stats is not None and reply.stats.cached_tokens == record.num_cached_tokens
        assert reply.stats.completion_tokens == len(record.output_token_ids) and reply.text == record.text
    assert records[0].prompt_source == "rendered"
    for before, record in zip(records, records[1:]):
        earlier = list(before.prompt_token_ids + before.output_token_ids)
        assert record.prompt_source == "continued"
        assert list(record.prompt_token_ids[:len(earlier)]) == earlier  # ChatML keeps the end-of-turn token
        # Everything of the earlier turns was cached, but for the last, partly filled block.
        assert record.num_cached_tokens >= len(earlier) - BLOCK_SIZE, (record.num_cached_tokens, len(earlier))


def test_the_prompt_is_rendered_again_where_stored_ids_cannot_be_used(chat_stream: ChatStream) -> None:
    _turn(chat_stream, QUESTIONS[0])
    assert _turn(chat_stream, QUESTIONS[1]).prompt_source == "continued"
    # A new system text: the stored ids stand for another prompt.
    chat_stream.get_console_chat_prompt().set_system("You answer in one word.")
    changed = _turn(chat_stream, QUESTIONS[2])
    assert changed.prompt_source == "rendered"
    assert "You answer in one word." in chat_stream.tokenizer.decode(changed.prompt_token_ids)
    assert _turn(chat_stream, QUESTIONS[3]).prompt_source == "continued"  # and from there on, continued again


def test_a_conversation_too_long_for_the_context_is_rendered_with_old_exchanges_left_out(tiny_model_factory) -> None:
    model, tokenizer = tiny_model_factory("llama")
    tokenizer.chat_template = CHATML
    chat_stream = ChatStream(model=model, tokenizer=tokenizer, chat_prompt_clazz=ChatPromptChatTemplate,
                             temperature=0.0, max_new_tokens=12, context_len=150, num_kv_blocks=64)
    try:
        records = [_turn(chat_stream, question + " and then some more words") for question in QUESTIONS]
    finally:
        chat_stream.shutdown()
    assert records[1].prompt_source == "continued"
    assert records[-1].prompt_source == "rendered" and records[-1].truncated_prompt
    assert len(records[-1].prompt_token_ids) <= 150 - 12
