"""Tests for chatstream.http.metrics and chatstream.http.ops_routes.

Unit tests feed the observer hooks and the scrape-time collector fake timings and fake engines;
the end-to-end tests serve a tiny random model over real HTTP and check that /metrics moves under
load, that /health follows loading -> ready, and that a really dead engine thread turns /health
to 503 while /metrics keeps answering.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from chatstream import ChatPromptTogetherRedPajamaINCITEChat, ChatStream
from chatstream.engine.outputs import RequestDelta
from chatstream.engine.stats import EngineStats
from chatstream.facade.admission import Admission
from chatstream.http.metrics import Metrics
from chatstream.http.ops_routes import add_ops_routes, health_body
from chatstream.http.server_state import ServerState
from chatstream.http.serving_context import ServingContext
from live_server import LiveServer, read_chat_stream, session_client

MODEL = "tiny-llama"
P = "chatstream:"
# Long enough to fill several 16-token KV blocks, so a repeat of it must hit the prefix cache.
LONG_PROMPT = ("Prefix caching lets two prompts that start with the same system message share their first "
               "blocks. A scheduler decides which sequences run in each step, and a cache keeps the keys and "
               "values around. When memory runs out, a request can be preempted and its blocks are freed.")


def parse(text: str) -> dict[str, float]:
    """Samples by name, with labels other than model_name appended as `{k=v,...}`."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.labels.pop("model_name", MODEL) == MODEL
            extra = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[sample.name + (f"{{{extra}}}" if extra else "")] = sample.value
    return samples


def scrape(metrics: Metrics) -> dict[str, float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return parse(body.decode())


def finished_delta(reason: str | None) -> RequestDelta:
    return RequestDelta("r", [1], "x", finished=reason is not None, finish_reason=reason,  # type: ignore[arg-type]
                        num_prompt_tokens=3, num_cached_tokens=0, num_output_tokens=1)


# -- unit: observer math --------------------------------------------------------------------------
def test_observer_hooks_fill_the_histograms_and_count_finish_reasons() -> None:
    metrics = Metrics(MODEL)
    metrics.on_first_token(0.2)
    metrics.on_tokens(0.03, 1)
    metrics.on_tokens(0.3, 3)  # a late consumer got 3 tokens at once: 3 gaps of 0.1 s
    metrics.on_tokens(0.5, 0)  # no tokens, nothing to observe
    metrics.on_finish(2.0, finished_delta("length"))
    metrics.on_finish(1.0, finished_delta("stop"))
    metrics.on_finish(0.5, finished_delta(None))  # the consumer left mid-stream
    metrics.on_finish(0.25, None)  # the consumer left before any token
    metrics.observe_queue_time(0.7)
    s = scrape(metrics)
    assert s[P + "time_to_first_token_seconds_count"] == 1
    assert s[P + "time_to_first_token_seconds_sum"] == pytest.approx(0.2)
    assert s[P + "inter_token_latency_seconds_count"] == 4
    assert s[P + "inter_token_latency_seconds_sum"] == pytest.approx(0.33)  # the real decode time
    assert s[P + "inter_token_latency_seconds_bucket{le=0.04}"] == 1
    assert s[P + "inter_token_latency_seconds_bucket{le=0.1}"] == 4
    assert s[P + "e2e_request_latency_seconds_count"] == 4
    assert s[P + "e2e_request_latency_seconds_sum"] == pytest.approx(3.75)
    assert s[P + "request_queue_time_seconds_count"] == 1
    assert s[P + "request_queue_time_seconds_sum"] == pytest.approx(0.7)
    assert s[P + "request_success_total{finished_reason=length}"] == 1
    assert s[P + "request_success_total{finished_reason=stop}"] == 1
    assert s[P + "request_success_total{finished_reason=abort}"] == 2


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(MODEL), Metrics(MODEL)  # same names: would clash in one registry
    first.on_first_token(1.0)
    assert scrape(first)[P + "time_to_first_token_seconds_count"] == 1
    assert scrape(second)[P + "time_to_first_token_seconds_count"] == 0


# -- unit: scrape-time collector ------------------------------------------------------------------
def fake_chat_stream(with_engine: bool = True) -> Any:
    admission = SimpleNamespace(num_running=2, num_waiting=3, max_running=2, max_waiting=5)
    if not with_engine:
        return SimpleNamespace(admission=admission, engine=None)
    stats = EngineStats(num_running=2, num_waiting=1, num_preemptions=4, num_kv_blocks=8, num_free_kv_blocks=6,
                        prefix_cache_queries=320, prefix_cache_hits=96, num_prompt_tokens=500,
                        num_generation_tokens=70, num_finished_requests=6)
    return SimpleNamespace(admission=admission, engine=SimpleNamespace(stats=stats, observer=None))


def test_collector_reads_engine_and_admission_at_scrape_time() -> None:
    metrics = Metrics(MODEL)
    chat_stream = fake_chat_stream()
    metrics.attach(chat_stream.engine, chat_stream.admission)
    assert chat_stream.engine.observer is metrics
    s = scrape(metrics)
    assert s[P + "num_requests_running"] == 2
    assert s[P + "num_requests_waiting"] == 1 + 3  # engine queue + in line for a run slot
    assert s[P + "kv_cache_usage_perc"] == 0.25
    assert s[P + "num_preemptions_total"] == 4
    assert (s[P + "prefix_cache_queries_total"], s[P + "prefix_cache_hits_total"]) == (320, 96)
    assert (s[P + "prompt_tokens_total"], s[P + "generation_tokens_total"]) == (500, 70)
    assert (s[P + "admission_running"], s[P + "admission_waiting"], s[P + "admission_capacity"]) == (2, 3, 7)
    # The engine publishes a new snapshot after each step: read live, not cached at attach.
    chat_stream.engine.stats = dataclasses.replace(chat_stream.engine.stats, num_generation_tokens=71)
    assert scrape(metrics)[P + "generation_tokens_total"] == 71


def test_collector_copes_with_no_chat_stream_and_with_no_engine() -> None:
    metrics = Metrics(MODEL)
    text = metrics.render()[0].decode()
    assert "# TYPE chatstream:num_requests_running gauge" in text  # announced, but no sample yet
    assert P + "num_requests_running" not in scrape(metrics)
    chat_stream = fake_chat_stream(with_engine=False)  # the mock generator has no engine
    metrics.attach(chat_stream.engine, chat_stream.admission)
    s = scrape(metrics)
    assert s[P + "admission_capacity"] == 7 and P + "kv_cache_usage_perc" not in s


def serving(engine: Any) -> ServingContext:
    return ServingContext(model_name=MODEL, engine=engine, tokenizer=None, admission=Admission(1, 0), retry_after_sec=1)


def test_health_body_for_each_state() -> None:
    state = ServerState(model_name=MODEL)
    assert health_body(state) == ({"status": "loading", "model": MODEL}, 503)
    state.serving = serving(SimpleNamespace(is_running=True, error=None, dead_reason=None))
    assert health_body(state) == ({"status": "ready", "model": MODEL}, 200)
    state.serving = serving(None)  # a ChatStream of mock responses has no engine to die
    assert health_body(state) == ({"status": "ready", "model": MODEL}, 200)
    state.serving = serving(SimpleNamespace(is_running=False, error=RuntimeError("x" * 1000),
                                            dead_reason="RuntimeError: " + "x" * 1000))
    body, code = health_body(state)
    assert code == 503 and body["status"] == "dead" and body["error"].startswith("RuntimeError: xxx")
    assert len(body["error"]) <= 300
    state.load_error = OSError("no such model")
    assert health_body(state) == ({"status": "failed", "model": MODEL, "error": "OSError: no such model"}, 503)
    state.drain.draining = True  # SIGTERM: the server still answers, and says it is going away
    body, code = health_body(state)
    assert code == 503 and body["status"] == "draining" and "shutting down" in body["detail"]


# -- end to end over HTTP -------------------------------------------------------------------------
@pytest.fixture
def served(tiny_model_factory) -> Iterator[tuple[LiveServer, ServerState, ChatStream]]:
    model, tokenizer = tiny_model_factory("llama")
    chat_stream = ChatStream(model=model, tokenizer=tokenizer, chat_prompt_clazz=ChatPromptTogetherRedPajamaINCITEChat,
                             num_kv_blocks=64, max_new_tokens=8, temperature=0.0)
    state = ServerState(model_name=MODEL, metrics=Metrics(MODEL))  # chat_stream unset: "loading"
    app = FastAPI()
    app.state.server = state
    add_ops_routes(app)
    chat_stream.append_middlewares(app)
    chat_stream.append_apis(app, {"include": ["chat_stream"]})
    try:
        with LiveServer(app) as server:
            yield server, state, chat_stream
    finally:
        chat_stream.shutdown()


def get_metrics(url: str) -> dict[str, float]:
    response = httpx.get(url + "/metrics", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def wait_for_metrics(url: str, done: Callable[[dict[str, float]], bool], timeout: float = 30.0) -> dict[str, float]:
    # The observer's on_finish runs as the generator closes, which may be just after the last chunk is sent.
    deadline = time.monotonic() + timeout
    while not done(samples := get_metrics(url)):
        assert time.monotonic() < deadline, "metrics did not reach the expected values"
        time.sleep(0.02)
    return samples


def num_finished(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith(P + "request_success_total"))


def chat(url: str, text: str) -> list[str]:
    with session_client(url) as client:  # a fresh session: identical text gives an identical prompt
        response = client.post("/chat_stream", json={"user_input": text})
        assert response.status_code == 200
        return read_chat_stream(response)


def test_health_follows_loading_and_metrics_move_under_load(served) -> None:
    server, state, chat_stream = served
    response = httpx.get(server.url + "/health")
    assert response.status_code == 503 and response.json() == {"status": "loading", "model": MODEL}
    assert P + "num_requests_running" not in get_metrics(server.url)  # 200 while loading, no engine yet

    state.metrics.attach(chat_stream.engine, chat_stream.admission)
    state.set_ready(chat_stream)
    response = httpx.get(server.url + "/health")
    assert response.status_code == 200 and response.json() == {"status": "ready", "model": MODEL}
    before = get_metrics(server.url)
    assert before[P + "num_requests_running"] == 0 and before[P + "admission_capacity"] == 2 + 5

    prompts = ["Hello there!", "How are you today?", LONG_PROMPT, LONG_PROMPT]
    for text in prompts[:-1]:
        assert chat(server.url, text)
    middle = wait_for_metrics(server.url, lambda s: num_finished(s) >= num_finished(before) + len(prompts) - 1)
    assert chat(server.url, prompts[-1])
    after = wait_for_metrics(server.url, lambda s: num_finished(s) >= num_finished(before) + len(prompts))

    def grew(name: str) -> float:
        return after[P + name] - before.get(P + name, 0.0)

    assert num_finished(after) - num_finished(before) == len(prompts)
    assert after.get(P + "request_success_total{finished_reason=abort}", 0.0) == 0
    assert grew("prompt_tokens_total") > 2 * len(LONG_PROMPT) // 10
    generated = grew("generation_tokens_total")
    assert len(prompts) <= generated <= 8 * len(prompts)
    assert grew("prefix_cache_queries_total") > 0
    # The repeat finds every full block of its prompt cached: all but at most one block of tokens.
    repeat_prompt_tokens = after[P + "prompt_tokens_total"] - middle[P + "prompt_tokens_total"]
    repeat_hits = after[P + "prefix_cache_hits_total"] - middle[P + "prefix_cache_hits_total"]
    assert repeat_prompt_tokens - chat_stream.engine.stats.block_size <= repeat_hits < repeat_prompt_tokens
    assert grew("time_to_first_token_seconds_count") == len(prompts)
    # Every token after a request's first is one inter-token observation.
    assert grew("inter_token_latency_seconds_count") == generated - len(prompts)
    assert grew("e2e_request_latency_seconds_count") == len(prompts)
    assert after[P + "num_requests_running"] == 0 and after[P + "num_requests_waiting"] == 0
    assert 0.0 <= after[P + "kv_cache_usage_perc"] <= 1.0
    assert after[P + "admission_running"] == 0


def test_a_dead_engine_thread_turns_health_to_503_and_metrics_keep_answering(served, monkeypatch) -> None:
    server, state, chat_stream = served
    state.metrics.attach(chat_stream.engine, chat_stream.admission)
    state.set_ready(chat_stream)
    assert httpx.get(server.url + "/health").status_code == 200

    def broken_step() -> list[RequestDelta]:
        raise RuntimeError("simulated device failure")

    monkeypatch.setattr(chat_stream.engine.core, "step", broken_step)
    with session_client(server.url, timeout=30) as client:  # must fail, not hang
        response = client.post("/chat_stream", json={"user_input": "Hello there!"})
        body = response.text
    # Either refused up front or ended with the error marker and the reason: never a normal-looking reply.
    assert response.status_code == 503 or (
        "<::ERROR::>" in body.split("<::EOS::>")[-2] and "simulated device failure" in body)
    assert not chat_stream.engine.is_running

    response = httpx.get(server.url + "/health")
    assert response.status_code == 503
    health = response.json()
    assert health["status"] == "dead" and "simulated device failure" in health["error"]
    samples = wait_for_metrics(server.url, lambda s: s.get(P + "request_success_total{finished_reason=abort}") == 1)
    assert samples[P + "num_requests_running"] >= 0  # the collector still reads the dead engine
    assert httpx.post(server.url + "/chat_stream", json={"user_input": "again"}).status_code == 503
