"""The /v1 routes end to end: a tiny random model behind a real uvicorn server, driven by the official
`openai` client. One run slot and no waiting room, so the 429 test needs only one held stream."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import aclosing, contextmanager

import httpx
import openai
import pytest
from fastapi import FastAPI

from chatstream import ChatPromptChatTemplate, ChatStream, LLM, SamplingParams
from chatstream.http.openai_routes import add_openai_routes
from chatstream.http.server_state import ServerState
from live_server import LiveServer

pytest.importorskip("openai")
KEY = "sk-test-key"
TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
USER = [{"role": "user", "content": "How are you today?"}]


def _app(state: ServerState) -> FastAPI:
    app = FastAPI()
    app.state.server = state
    add_openai_routes(app)
    return app


class RecordingMetrics:
    def __init__(self) -> None:
        self.queue_times: list[float] = []

    def observe_queue_time(self, seconds: float) -> None:
        self.queue_times.append(seconds)


@pytest.fixture(scope="module")
def served(tiny_model_factory):
    model, tokenizer = tiny_model_factory("llama")
    tokenizer.chat_template = TEMPLATE  # the tiny tokenizer ships none
    chat_stream = ChatStream(model=model, tokenizer=tokenizer, chat_prompt_clazz=ChatPromptChatTemplate,
                             num_kv_blocks=64, num_of_concurrent_executions=1, max_queue_size=0, retry_after_sec=2)
    state = ServerState(model_name="tiny", api_key=KEY, metrics=RecordingMetrics())
    state.set_ready(chat_stream)
    with LiveServer(_app(state)) as server:
        yield server, chat_stream
    chat_stream.shutdown()


@pytest.fixture
def client(served) -> Iterator[openai.OpenAI]:
    server, chat_stream = served
    with openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60) as client:
        yield client
    _wait_for(lambda: _idle(chat_stream))  # the next test starts with the slot free


def _idle(chat_stream: ChatStream) -> bool:
    stats = chat_stream.engine.stats  # the engine thread's snapshot after its latest step
    return chat_stream.admission.num_running == 0 and stats.num_running == stats.num_waiting == 0


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@contextmanager
def held_streams(chat_stream: ChatStream) -> Iterator[list[str]]:
    """Until the block ends, each engine stream stops after its first delta with text (so the client has
    an event and the stream holds its slot); yields how each stream ended: its finish reason, or
    "closed" when its consumer left before the end."""
    gate, ends = threading.Event(), []
    generate = chat_stream.engine.generate

    async def gated(*args, **kwargs):
        end = "closed"
        try:
            async with aclosing(generate(*args, **kwargs)) as deltas:
                async for delta in deltas:
                    end = delta.finish_reason or "closed"
                    yield delta
                    while delta.new_text and not gate.is_set():
                        await asyncio.sleep(0.01)
        finally:
            ends.append(end)

    chat_stream.engine.generate = gated
    try:
        yield ends
    finally:
        gate.set()
        del chat_stream.engine.generate  # the class's method again


def test_chat_completion_and_its_usage(client, served):
    metrics = served[0].app.state.server.metrics
    before = len(metrics.queue_times)
    answer = client.chat.completions.create(model="tiny", messages=USER, max_tokens=8, temperature=0)
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-") and answer.model == "tiny"
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and choice.message.content and choice.finish_reason in ("stop", "length")
    assert answer.usage.prompt_tokens > 0 and 0 < answer.usage.completion_tokens <= 8
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert len(metrics.queue_times) == before + 1


def test_streamed_chat_equals_the_whole_answer(client):
    whole = client.chat.completions.create(model="tiny", messages=USER, max_tokens=12, temperature=0)
    chunks = list(client.chat.completions.create(model="tiny", messages=USER, max_tokens=12, temperature=0,
                                                 stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].choices[0].delta.content is None


def test_streams_are_server_sent_events_ending_with_done(served):
    server, _ = served
    with httpx.stream("POST", server.url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"},
                      json={"prompt": "Once", "max_tokens": 3, "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events) and events[-1] == "data: [DONE]"


def test_completions_greedy_match_the_offline_engine(client, tiny_model_factory):
    model, tokenizer = tiny_model_factory("llama")  # same weights, fresh engine
    prompt_ids = tokenizer.encode("The quick brown fox")
    expected = LLM(model, tokenizer, num_kv_blocks=64).generate(
        prompt_ids, SamplingParams(temperature=0, max_tokens=10))[0].outputs[0]
    for prompt in (prompt_ids, "The quick brown fox"):
        answer = client.completions.create(model="tiny", prompt=prompt, max_tokens=10, temperature=0)
        assert answer.object == "text_completion" and answer.id.startswith("cmpl-")
        assert answer.choices[0].text == expected.text and answer.choices[0].finish_reason == expected.finish_reason
    streamed = client.completions.create(model="tiny", prompt=prompt_ids, max_tokens=10, temperature=0, stream=True)
    chunks = list(streamed)
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks) == expected.text


def test_two_choices_seeded_reproducible_and_interleaved_when_streamed(client):
    kwargs = {"model": "tiny", "messages": USER, "max_tokens": 12, "temperature": 1.0, "seed": 7, "n": 2}
    first = client.chat.completions.create(**kwargs)
    again = client.chat.completions.create(**kwargs)
    texts = [c.message.content for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1] and texts == [c.message.content for c in again.choices]
    assert texts[0] != texts[1]  # seed + i per choice, so they differ
    streamed = {0: "", 1: ""}
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
    assert [streamed[0], streamed[1]] == texts
    completions = client.completions.create(model="tiny", prompt=["The dog", "A cat"], n=2, max_tokens=4)
    assert [c.index for c in completions.choices] == [0, 1, 2, 3]


def test_stream_usage_reports_prefix_cache_hits(client):
    long_prompt = [{"role": "user", "content": " ".join(["The scheduler decides which sequences run."] * 12)}]
    usages = []
    for _ in range(2):
        chunks = list(client.chat.completions.create(model="tiny", messages=long_prompt, max_tokens=4, temperature=0,
                                                     stream=True, stream_options={"include_usage": True}))
        assert chunks[-1].choices == [] and all(c.usage is None for c in chunks[:-1])
        usages.append(chunks[-1].usage)
    assert usages[0].prompt_tokens == usages[1].prompt_tokens > 64
    assert usages[1].prompt_tokens_details.cached_tokens >= 64  # full blocks of the same prompt are reused


def test_stop_strings_cut_the_text(client):
    kwargs = {"model": "tiny", "prompt": "Once upon a time", "max_tokens": 24, "temperature": 0}
    text = client.completions.create(**kwargs).choices[0].text
    middle = len(text) // 2
    stop = text[middle:middle + 2]
    cut = client.completions.create(**kwargs, stop=[stop]).choices[0]
    assert cut.text == text[:text.find(stop)] and cut.finish_reason == "stop"


def test_models_list(client):
    models = client.models.list().data
    assert [(m.id, m.owned_by, m.object) for m in models] == [("tiny", "chatstream", "model")]


def test_wrong_or_missing_key_is_401(served):
    server, _ = served
    with openai.OpenAI(base_url=server.url + "/v1", api_key="sk-wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as err:
            bad.chat.completions.create(model="tiny", messages=USER, max_tokens=2)
        assert err.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
    missing = httpx.get(server.url + "/v1/models")  # the openai client refuses to send no key at all
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="no-such-model", messages=USER, max_tokens=2)
    assert err.value.code == "model_not_found" and "no-such-model" in err.value.message


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"temperature": -1}, "temperature"),
    ({"n": 9}, "n"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"logit_bias": {"99999": 5}}, "logit_bias"),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools.0.function.name"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}}}}, "response_format"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"extra_body": {"no_such_field": 1}}, "no_such_field"),
    ({"messages": [{"role": "user", "content": "x " * 600}]}, "messages"),
])
def test_bad_fields_are_400s_naming_the_field(client, served, kwargs, param):
    engine = served[1].engine
    before = engine.core.stats.num_prompt_tokens  # counts every request the engine ever took
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(**{"model": "tiny", "messages": USER, "max_tokens": 2, **kwargs})
    assert err.value.param == param and param in err.value.message
    assert engine.core.stats.num_prompt_tokens == before  # nothing reached the engine


def test_max_tokens_beyond_the_context_is_clamped(client, served):
    _, chat_stream = served
    answer = client.completions.create(model="tiny", prompt="x", max_tokens=10**6, temperature=0)
    assert answer.usage.completion_tokens <= chat_stream.engine.max_model_len - answer.usage.prompt_tokens


def test_a_full_queue_is_429_with_retry_after(client, served):
    _, chat_stream = served
    with held_streams(chat_stream):
        running = client.chat.completions.create(model="tiny", messages=USER, max_tokens=50, temperature=0,
                                                 stream=True)
        next(iter(running))  # it holds the only slot now
        with pytest.raises(openai.RateLimitError) as err:
            client.chat.completions.create(model="tiny", messages=USER, max_tokens=2)
        assert err.value.response.headers["retry-after"] == "2" and err.value.code == "rate_limit_exceeded"
        running.close()


def test_a_client_that_closes_a_stream_frees_the_slot_and_the_engine_request(client, served):
    _, chat_stream = served
    with held_streams(chat_stream) as ends:
        stream = client.completions.create(model="tiny", prompt="Once", max_tokens=400, temperature=0, stream=True)
        next(iter(stream))
        assert chat_stream.admission.num_running == 1
        stream.close()
        _wait_for(lambda: _idle(chat_stream))
    assert ends == ["closed"]  # the consumer left before the end: the engine request was aborted


def test_a_client_that_leaves_a_non_streaming_request_aborts_it(served):
    server, chat_stream = served
    with held_streams(chat_stream) as ends:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes the connection
            httpx.post(server.url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"},
                       json={"prompt": "Once", "max_tokens": 400, "temperature": 0},
                       timeout=httpx.Timeout(30, read=0.5))
        _wait_for(lambda: _idle(chat_stream))
    assert ends == ["closed"]


def test_not_ready_is_503():
    with LiveServer(_app(ServerState(model_name="tiny"))) as server:
        response = httpx.post(server.url + "/v1/chat/completions", json={"model": "tiny", "messages": USER})
    assert response.status_code == 503 and response.json()["error"]["type"] == "service_unavailable"


@pytest.mark.slow
def test_smollm2_knows_the_capital_of_france(smollm2_dir):
    chat_stream = ChatStream(model=str(smollm2_dir), chat_prompt_clazz=ChatPromptChatTemplate, num_kv_blocks=128)
    try:
        state = ServerState(model_name="smollm2")
        state.set_ready(chat_stream)
        with LiveServer(_app(state)) as server, \
                openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120) as client:
            question = [{"role": "user", "content": "What is the capital of France?"}]
            answer = client.chat.completions.create(model="smollm2", messages=question, temperature=0, max_tokens=40)
            assert "Paris" in answer.choices[0].message.content
            chunks = client.chat.completions.create(model="smollm2", messages=question, temperature=0, max_tokens=40,
                                                    stream=True)
            assert "".join(c.choices[0].delta.content or "" for c in chunks) == answer.choices[0].message.content
    finally:
        chat_stream.shutdown()
