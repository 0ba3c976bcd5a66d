"""Big prompts cost the event loop nothing: they are rendered and tokenized on the ChatStream's
thread pool, a prompt that cannot fit is refused from its byte count before any tokenizing, and
fitting a long conversation tokenizes O(log exchanges) times, never once per exchange left out."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from chatstream import ChatPromptDatabricksDolly, ChatStream
from chatstream.facade.prompt_bounds import PromptMeasure, max_bytes_per_token
from live_server import session_client
from tiny_server import tiny_server


class SpyTokenizer:
    """Records which thread tokenized how many characters; delegates everything else."""

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        self.calls: list[tuple[str, int]] = []

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def _record(self, text) -> None:
        if isinstance(text, str):
            self.calls.append((threading.current_thread().name, len(text)))

    def __call__(self, text, *args, **kwargs):
        self._record(text)
        return self._tokenizer(text, *args, **kwargs)

    def encode(self, text, *args, **kwargs):
        self._record(text)
        return self._tokenizer.encode(text, *args, **kwargs)


def test_the_byte_bound_is_a_true_lower_bound(tiny_model_factory):
    _, tokenizer = tiny_model_factory("llama")
    measure = PromptMeasure(tokenizer)
    assert measure.max_bytes_per_token == max_bytes_per_token(tokenizer) > 1
    for text in ["Hello world", "日本語のテキスト " * 50, "🙂" * 300, "a" * 5000, "The quick brown fox. " * 200]:
        assert measure.min_tokens(text) <= len(tokenizer.encode(text, add_special_tokens=False))


@pytest.fixture(scope="module")
def served(tiny_model_factory):
    with tiny_server(tiny_model_factory) as (server, app):
        chat_stream = app.state.server.chat_stream
        spy = SpyTokenizer(chat_stream.tokenizer)
        chat_stream.chat_generator.tokenizer = spy
        app.state.server.serving.chat_stream.chat_generator.tokenizer = spy
        openai = app.state.server.openai
        openai.context = type(openai.context)(**{**openai.context.__dict__, "tokenizer": spy})
        # The tiny model's context (512 tokens x 24 bytes) is smaller than the default inline size.
        chat_stream.offload.inline_chars = 4096
        yield server, spy


def test_big_prompts_are_tokenized_off_the_event_loop(served):
    server, spy = served
    with session_client(server.url) as client:
        spy.calls.clear()
        assert client.post("/chat_stream", json={"user_input": "Hello there"}).status_code == 200
        small = list(spy.calls)
        spy.calls.clear()
        assert client.post("/chat_stream", json={"user_input": "x " * 10_000}).status_code == 200
        big = list(spy.calls)
    spy.calls.clear()
    response = httpx.post(server.url + "/v1/completions", json={"prompt": "y " * 2_500, "max_tokens": 1})
    assert response.status_code in (200, 400)
    assert small and all(not name.startswith("chatstream-tokenize") for name, _ in small)  # inline: cheap
    assert big and all(name.startswith("chatstream-tokenize") for name, _ in big), big
    assert spy.calls and all(name.startswith("chatstream-tokenize") for name, _ in spy.calls), spy.calls


def test_a_prompt_that_cannot_fit_is_refused_before_tokenizing(served):
    server, spy = served
    spy.calls.clear()
    huge = "a" * 2_000_000
    response = httpx.post(server.url + "/v1/completions", json={"prompt": huge, "max_tokens": 2}, timeout=60)
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"
    response = httpx.post(server.url + "/v1/chat/completions", timeout=60,
                          json={"messages": [{"role": "user", "content": huge}], "max_tokens": 2})
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"
    assert not [length for _, length in spy.calls if length >= 1_000_000], "the huge prompt was tokenized"


def test_fitting_a_long_conversation_tokenizes_a_logarithmic_number_of_times(tiny_model_factory):
    model, tokenizer = tiny_model_factory("llama")
    chat_stream = ChatStream(model=model, tokenizer=tokenizer, chat_prompt_clazz=ChatPromptDatabricksDolly,
                             context_len=300, max_new_tokens=8, temperature=0.0, num_kv_blocks=64)
    spy = SpyTokenizer(tokenizer)
    chat_stream.chat_generator.tokenizer = spy
    chat_prompt = chat_stream.get_console_chat_prompt()
    for i in range(64):
        chat_prompt.add_requester_msg(f"question number {i} " + "words " * 40)
        chat_prompt.add_responder_msg(f"answer number {i}")

    async def turn() -> None:
        async for _ in chat_stream.handle_console_input("the last question"):
            pass

    try:
        asyncio.run(turn())
        record = chat_stream.chat_generator.records[-1]
    finally:
        chat_stream.shutdown()
    assert record.truncated_prompt and record.num_prompt_tokens <= 292
    # Before: one full encoding per exchange left out (60+ here). Now: a bisection, each encoding
    # at most about a context's worth of text.
    assert len(spy.calls) <= 10, len(spy.calls)
    longest = max(length for _, length in spy.calls)
    assert longest <= 300 * PromptMeasure(tokenizer).max_bytes_per_token


def test_one_huge_turn_is_cut_to_its_tail_before_tokenizing(tiny_model_factory):
    model, tokenizer = tiny_model_factory("llama")
    chat_stream = ChatStream(model=model, tokenizer=tokenizer, chat_prompt_clazz=ChatPromptDatabricksDolly,
                             context_len=300, max_new_tokens=8, temperature=0.0, num_kv_blocks=64)
    spy = SpyTokenizer(tokenizer)
    chat_stream.chat_generator.tokenizer = spy

    async def turn() -> str:
        text = ""
        async for chunk in chat_stream.handle_console_input("the start " + "lorem ipsum " * 50_000 + " the end"):
            text = chunk[0]
        return text

    try:
        asyncio.run(turn())
        record = chat_stream.chat_generator.records[-1]
    finally:
        chat_stream.shutdown()
    assert record.truncated_prompt and record.num_prompt_tokens == 292
    assert max(length for _, length in spy.calls) <= 301 * PromptMeasure(tokenizer).max_bytes_per_token
