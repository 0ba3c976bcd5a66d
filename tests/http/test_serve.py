"""`chatstream serve` as a user runs it: a real process, uvicorn on 127.0.0.1, the bundled SmolLM2,
and the official `openai` client; then SIGTERM shuts it down cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from live_server import read_chat_stream, session_client

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(smollm2_dir, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CHATSTREAM_CACHE_DIR": str(log.parent),
           "CHATSTREAM_DATA_DIR": str(log.parent)}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "chatstream.cli", "serve", "--model", str(smollm2_dir), "--port", str(port),
             "--num-concurrent", "1", "--max-queue", "0", "--num-kv-blocks", "256", "--max-new-tokens", "300",
             "--temperature", "0"], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    statuses = set()
    deadline = time.monotonic() + 240
    while True:
        assert process.poll() is None, log.read_text()
        try:
            response = httpx.get(url + "/health", timeout=5)
            statuses.add(response.json()["status"])
            if response.status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    yield url, process, log, statuses
    if process.poll() is None:
        process.kill()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_start_up_report_and_health(server):
    url, _, log, statuses = server
    text = log.read_text()
    assert f"web chat:   {url}/" in text and f"OpenAI API: {url}/v1" in text
    assert "KV cache: 256 blocks x 16 tokens = 4096 tokens" in text and "sequences of the full" in text
    assert "engine steps: up to 64 sequences and 512 tokens each" in text
    assert statuses <= {"loading", "ready"} and "ready" in statuses


def test_openai_chat_and_completions_streaming_and_not(client):
    models = client.models.list()
    model = models.data[0].id
    chat = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0)
    assert "Paris" in chat.choices[0].message.content and chat.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0,
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == chat.choices[0].message.content  # greedy: streamed and whole answers agree
    usage = chunks[-1].usage
    assert usage.completion_tokens == chat.usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens >= 16  # the same prompt again: prefix cache hit
    completion = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8,
                                           temperature=0)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True))
    assert completion.choices[0].text == streamed and completion.usage.completion_tokens == 8


def test_a_full_queue_is_a_429_the_client_can_read(server, client):
    url = server[0]
    with session_client(url) as holder:
        with holder.stream("POST", "/chat_stream", json={"user_input": "Write a long story about a dragon."}) as held:
            chunks = held.iter_text()  # kept open: it holds the one run slot
            next(chunks)
            with pytest.raises(openai.RateLimitError) as info:
                client.chat.completions.create(model=client.models.list().data[0].id,
                                               messages=[{"role": "user", "content": "hi"}])
            assert int(info.value.response.headers["retry-after"]) >= 1
            native = httpx.post(url + "/chat_stream", json={"user_input": "hi"})
            assert native.status_code == 429 and native.json()["error"] == "too_many_requests"


def test_the_page_the_native_api_and_metrics(server):
    url = server[0]
    page = httpx.get(url + "/")
    assert page.status_code == 200 and "chatstream.js" in page.text and page.headers["content-type"].startswith(
        "text/html")
    assert httpx.get(url + "/chatstream.js").headers["content-type"].startswith("text/javascript")
    with session_client(url) as browser:
        reply = read_chat_stream(browser.post("/chat_stream", json={"user_input": "What is the capital of France?"}))
        assert "Paris" in reply[-1]
    metrics = httpx.get(url + "/metrics").text
    for name in ("chatstream:generation_tokens_total", "chatstream:time_to_first_token_seconds_count",
                 "chatstream:e2e_request_latency_seconds_count", "chatstream:request_queue_time_seconds_count",
                 "chatstream:prefix_cache_hits_total"):
        line = next(line for line in metrics.splitlines() if line.startswith(name + "{"))
        assert float(line.rsplit(" ", 1)[1]) > 0, line


def test_sigterm_shuts_down_cleanly(server):
    _, process, log, _ = server
    process.send_signal(signal.SIGTERM)
    # uvicorn finishes the lifespan shutdown (the engine thread stops), then re-raises the signal
    # so the exit status says SIGTERM, as a signalled process should.
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    text = log.read_text()
    assert "Application shutdown complete" in text and "Finished server process" in text
