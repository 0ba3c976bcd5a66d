"""OpenAIServing against a fake engine: prompts and params sent, slots, n choices, streams, disconnects,
engine failures and the metrics hook, all without a model or a server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from chatstream.facade.admission import Admission
from chatstream.engine.async_engine import EngineDeadError
from chatstream.http.openai_protocol import ChatCompletionRequest, CompletionRequest, OpenAIError
from chatstream.facade.disconnect import ClientGone
from chatstream.http.openai_serving import OpenAIServing, SSEStream
from chatstream.http.serving_context import ServingContext
from chatstream.engine.outputs import RequestDelta


class FakeTokenizer:
    chat_template = "{{ messages }}"

    def apply_chat_template(self, messages, tokenize: bool, add_generation_prompt: bool, **kwargs) -> str:
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) % 100 for c in text]

    def get_vocab(self) -> dict[str, int]:
        return {"a": 1, "<|im_end|>": 7, "<|endoftext|>": 0}


class FakeEngine:
    """Streams `words` one per delta (waiting `gate` before each), recording requests and aborts."""

    max_model_len = 64

    def __init__(self, words: list[str], error: Exception | None = None) -> None:
        self.words, self.error = words, error
        self.calls: list[tuple[list[int], Any, str]] = []
        self.aborted: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    vocab_size = 100

    def validate_prompt(self, ids: list[int]) -> None:
        if len(ids) >= self.max_model_len:
            raise ValueError(f"prompt is {len(ids)} tokens but max_model_len={self.max_model_len}")

    def validate_params(self, params) -> None:
        if any(t >= self.vocab_size for t in params.logit_bias or ()):
            raise ValueError("logit_bias token id out of range")

    async def prepare_grammar(self, spec) -> None:
        if spec.kind == "regex" and spec.value == "((":
            raise ValueError("the grammar engine rejected the regular expression")

    async def generate(self, ids, params, request_id):
        self.calls.append((list(ids), params, request_id))
        finished = False
        try:
            for i, word in enumerate(self.words):
                await asyncio.sleep(0)  # a real engine delivers between loop turns
                await self.gate.wait()
                if self.error is not None:
                    raise self.error
                finished = i == len(self.words) - 1
                yield RequestDelta(request_id, [i], word, finished, "stop" if finished else None, len(ids), 2, i + 1)
        finally:
            if not finished:
                self.aborted.append(request_id)


class FakeChatStream:
    def __init__(self, engine: FakeEngine, max_running: int = 1, max_waiting: int = 0) -> None:
        self.engine, self.tokenizer = engine, FakeTokenizer()
        self.admission = Admission(max_running, max_waiting)
        self.retry_after_sec = 3


class Metrics:
    def __init__(self) -> None:
        self.queue_times: list[float] = []

    def observe_queue_time(self, seconds: float) -> None:
        self.queue_times.append(seconds)


async def never() -> None:
    await asyncio.Event().wait()


def _serving(words=("Hel", "lo"), error=None, **admission) -> tuple[OpenAIServing, FakeChatStream, Metrics]:
    chat_stream = FakeChatStream(FakeEngine(list(words), error), **admission)
    metrics = Metrics()
    context = ServingContext(model_name="tiny", engine=chat_stream.engine, tokenizer=chat_stream.tokenizer,
                             admission=chat_stream.admission, retry_after_sec=chat_stream.retry_after_sec,
                             metrics=metrics)
    return OpenAIServing(context), chat_stream, metrics


def _chat(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], **fields})


def _events(texts: list[str]) -> list[Any]:
    assert all(t.startswith("data: ") and t.endswith("\n\n") for t in texts)
    return [t[6:-2] if t == "data: [DONE]\n\n" else json.loads(t[6:-2]) for t in texts]


async def _drain(stream: SSEStream) -> list[Any]:
    return _events([event async for event in stream])


def test_chat_sends_the_rendered_prompt_with_end_of_turn_stops_and_answers_a_dict():
    async def main():
        serving, chat_stream, metrics = _serving()
        answer = await serving.chat(_chat(max_tokens=1000, model="tiny"), never)
        ids, params, request_id = chat_stream.engine.calls[0]
        assert ids == FakeTokenizer().encode("<user>hi<assistant>")
        assert params.stop_token_ids == [7, 0] and params.max_tokens == 64 - len(ids)  # clamped to the room
        assert request_id.startswith(answer["id"]) and answer["id"].startswith("chatcmpl-")
        assert answer["choices"][0]["message"]["content"] == "Hello"
        assert answer["usage"]["prompt_tokens"] == len(ids) and answer["usage"]["completion_tokens"] == 2
        assert chat_stream.admission.num_running == 0
        assert len(metrics.queue_times) == 1
    asyncio.run(main())


def test_n_choices_use_distinct_requests_and_shifted_seeds():
    async def main():
        serving, chat_stream, metrics = _serving()
        answer = await serving.completion(CompletionRequest(prompt=["ab", "cd"], n=2, seed=10), never)
        calls = chat_stream.engine.calls
        assert [params.seed for _, params, _ in calls] == [10, 11, 10, 11]
        assert len({request_id for *_, request_id in calls}) == 4
        assert [c["index"] for c in answer["choices"]] == [0, 1, 2, 3] and answer["object"] == "text_completion"
        assert all(c["text"] == "Hello" for c in answer["choices"])
    asyncio.run(main())


def test_stream_events_in_openais_order_then_the_slot_is_free():
    async def main():
        serving, chat_stream, _ = _serving()
        stream = await serving.chat(_chat(stream=True, n=2, stream_options={"include_usage": True}), never)
        assert chat_stream.admission.num_running == 1
        events = await _drain(stream)
        assert events[-1] == "[DONE]" and events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] == 4
        chunks = events[:-2]
        assert all(c["object"] == "chat.completion.chunk" and "usage" in c for c in chunks)
        assert [c["choices"][0]["delta"] for c in chunks[:2]] == [{"role": "assistant", "content": ""}] * 2
        for index in (0, 1):
            mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
            assert "".join(c["delta"].get("content", "") for c in mine) == "Hello"
            assert mine[-1] == {"index": index, "delta": {}, "logprobs": None, "finish_reason": "stop"}
        assert chat_stream.admission.num_running == 0
    asyncio.run(main())


def test_closing_a_stream_midway_aborts_the_requests_and_frees_the_slot():
    async def main():
        serving, chat_stream, metrics = _serving(words=list("abcdefghij"))
        stream = await serving.completion(CompletionRequest(prompt="x", stream=True, n=2), never)
        first = await stream.__anext__()
        assert json.loads(first[6:])["object"] == "text_completion"
        await stream.aclose()
        await asyncio.sleep(0)
        assert sorted(chat_stream.engine.aborted) == sorted(r for *_, r in chat_stream.engine.calls)
        assert chat_stream.admission.num_running == 0
    asyncio.run(main())


def test_a_stream_that_never_starts_is_released_by_its_owner():
    async def main():
        serving, chat_stream, _ = _serving()
        stream = await serving.chat(_chat(stream=True), never)
        stream.release()
        stream.release()  # idempotent: the response and the stream's end may both call it
        assert chat_stream.admission.num_running == 0 and chat_stream.engine.calls == []
    asyncio.run(main())


def test_a_full_line_is_a_429_with_retry_after():
    async def main():
        serving, chat_stream, _ = _serving()
        held = await serving.chat(_chat(stream=True), never)
        with pytest.raises(OpenAIError) as err:
            await serving.chat(_chat(), never)
        assert err.value.status_code == 429 and err.value.headers == {"Retry-After": "3"}
        assert err.value.code == "rate_limit_exceeded"
        await held.aclose()
        assert chat_stream.admission.num_running == 0
    asyncio.run(main())


def test_a_client_that_leaves_while_waiting_or_generating_holds_nothing():
    async def main():
        serving, chat_stream, _ = _serving(max_waiting=1)
        held = await serving.chat(_chat(stream=True), never)
        left = asyncio.Event()
        waiting = asyncio.ensure_future(serving.chat(_chat(), left.wait))
        await asyncio.sleep(0.01)
        assert chat_stream.admission.num_waiting == 1
        left.set()
        with pytest.raises(ClientGone):
            await waiting
        assert chat_stream.admission.num_waiting == 0
        await held.aclose()
        chat_stream.engine.gate.clear()  # generation stalls; then the client leaves
        left.clear()
        generating = asyncio.ensure_future(serving.chat(_chat(), left.wait))
        await asyncio.sleep(0.01)
        left.set()
        with pytest.raises(ClientGone):
            await generating
        assert chat_stream.engine.aborted == [chat_stream.engine.calls[-1][2]]
        assert chat_stream.admission.num_running == 0
    asyncio.run(main())


def test_engine_failures_are_503s_or_an_error_event():
    async def main():
        serving, chat_stream, _ = _serving(error=EngineDeadError("dead"))
        with pytest.raises(OpenAIError) as err:
            await serving.chat(_chat(), never)
        assert err.value.status_code == 503 and err.value.type == "service_unavailable"
        events = await _drain(await serving.chat(_chat(stream=True), never))
        assert events[-1]["error"]["type"] == "service_unavailable"
        assert chat_stream.admission.num_running == 0
    asyncio.run(main())


@pytest.mark.parametrize(("call", "status", "param"), [
    (lambda s: s.chat(_chat(model="other"), never), 404, "model"),
    (lambda s: s.chat(_chat(messages=[{"role": "user", "content": "x" * 80}]), never), 400, "messages"),
    (lambda s: s.completion(CompletionRequest(prompt=[1] * 64), never), 400, "prompt"),
    (lambda s: s.chat(_chat(temperature=-2), never), 400, "temperature"),
    (lambda s: s.chat(_chat(logit_bias={"100": 1}), never), 400, "logit_bias"),
    (lambda s: s.chat(_chat(structured_outputs={"regex": "(("}), never), 400, "structured_outputs"),
    (lambda s: s.completion(CompletionRequest(prompt="x", guided_regex="(("), never), 400, "guided_regex"),
])
def test_bad_requests_hold_no_slot(call, status, param):
    async def main():
        serving, chat_stream, _ = _serving()
        with pytest.raises(OpenAIError) as err:
            await call(serving)
        assert (err.value.status_code, err.value.param) == (status, param)
        assert chat_stream.admission.num_running == 0 and chat_stream.engine.calls == []
    asyncio.run(main())
