"""No request kills the engine: over a real server, values that used to kill it are 400s naming the field, a
request that fails inside the engine fails alone, and the requests streaming beside them finish unharmed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from chatstream import ChatPromptChatTemplate, ChatStream
from chatstream.engine.detokenizer import IncrementalDetokenizer
from chatstream.http.openai_routes import add_openai_routes
from chatstream.http.ops_routes import add_ops_routes
from chatstream.http.server_state import ServerState
from live_server import LiveServer

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
PROMPTS = ["Once upon a time", "The quick brown fox", "Numbers like 1, 2, 3"]
FAILS_INSIDE = "\u2620"  # a stop string that, in this test, makes the engine's detokenizer raise


@pytest.fixture(scope="module")
def served(tiny_model_factory) -> Iterator[tuple[LiveServer, ChatStream]]:
    model, tokenizer = tiny_model_factory("llama")
    tokenizer.chat_template = TEMPLATE
    chat_stream = ChatStream(model=model, tokenizer=tokenizer, chat_prompt_clazz=ChatPromptChatTemplate,
                             num_kv_blocks=128, num_of_concurrent_executions=8, max_queue_size=8)
    app = FastAPI()
    state = ServerState(model_name="tiny")
    state.set_ready(chat_stream)
    app.state.server = state
    add_openai_routes(app)
    add_ops_routes(app)
    with LiveServer(app) as server:
        yield server, chat_stream
    chat_stream.shutdown()


def complete(url: str, body: dict) -> httpx.Response:
    return httpx.post(url + "/v1/completions", json={"model": "tiny", **body}, timeout=120)


def streamed_text(url: str, prompt: str) -> str:
    body = {"model": "tiny", "prompt": prompt, "max_tokens": 40, "temperature": 0, "stream": True}
    parts = []
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                event = json.loads(line[len("data: "):])
                assert "error" not in event, event
                parts.append(event["choices"][0]["text"])
    return "".join(parts)


def test_killer_values_and_a_failing_request_leave_the_engine_and_other_streams_alone(served, monkeypatch) -> None:
    server, chat_stream = served
    url = server.url
    expected = {p: streamed_text(url, p) for p in PROMPTS}  # alone, before anything goes wrong

    init, update = IncrementalDetokenizer.__init__, IncrementalDetokenizer.update

    def marking(self, tokenizer, prompt_token_ids, params):
        init(self, tokenizer, prompt_token_ids, params)
        self.fails_in_test = FAILS_INSIDE in params.stop

    def fragile(self, token_ids):
        if self.fails_in_test:
            raise RuntimeError("injected detokenizer failure")
        return update(self, token_ids)

    monkeypatch.setattr(IncrementalDetokenizer, "__init__", marking)
    monkeypatch.setattr(IncrementalDetokenizer, "update", fragile)

    results: dict[str, object] = {}

    def run(name: str, fn) -> None:
        try:
            results[name] = fn()
        except Exception as exc:  # noqa: BLE001 - asserted below
            results[name] = exc

    jobs = {f"stream {p}": (lambda p=p: streamed_text(url, p)) for p in PROMPTS}
    jobs["top_p"] = lambda: complete(url, {"prompt": "Hello", "max_tokens": 2, "top_p": 1e-300})
    jobs["repetition_penalty"] = lambda: complete(url, {"prompt": "Hello", "max_tokens": 2,
                                                        "repetition_penalty": 1e-300})
    jobs["fails inside"] = lambda: complete(url, {"prompt": "Hello", "max_tokens": 20, "stop": [FAILS_INSIDE]})
    jobs["health"] = lambda: httpx.get(url + "/health", timeout=30)
    threads = [threading.Thread(target=run, args=(name, fn)) for name, fn in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)

    for p in PROMPTS:
        assert results[f"stream {p}"] == expected[p], p
    for field in ("top_p", "repetition_penalty"):
        response = results[field]
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == field and field in error["message"] and "[" in error["message"]
    failed = results["fails inside"]
    assert failed.status_code == 500 and "generation failed" in failed.json()["error"]["message"]
    assert results["health"].status_code == 200

    health = httpx.get(url + "/health", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ready"
    assert chat_stream.engine.is_running and chat_stream.engine.dead_reason is None
    monkeypatch.undo()
    assert streamed_text(url, PROMPTS[0]) == expected[PROMPTS[0]]
    core = chat_stream.engine.core
    assert not core.requests and core.block_manager.num_free_blocks == core.block_manager.num_blocks
