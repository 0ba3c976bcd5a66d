"""A reply the engine cannot finish ends with a recognisable error, never with a normal-looking end:
/chat_stream with a last segment `reply so far<::ERROR::>reason<::EOS::>`, /v1 streams with an
error event (the engine dying is in test_metrics)."""

from __future__ import annotations

import json
from contextlib import aclosing

import httpx
import pytest

from chatstream.engine.async_engine import RequestFailedError
from chatstream.facade.chat_output import ERROR_MARKER
from live_server import read_chat_stream, session_client
from tiny_server import tiny_server


@pytest.fixture(scope="module")
def served(tiny_model_factory):
    with tiny_server(tiny_model_factory) as (server, app):
        yield server, app.state.server.chat_stream


@pytest.fixture
def failing_after_first_delta(served):
    """Every engine request fails in the engine after its first delta (as a request whose stop
    string or sampling row broke would); the engine itself lives on."""
    _, chat_stream = served
    engine = chat_stream.engine
    generate = engine.generate

    async def failing(*args, **kwargs):
        async with aclosing(generate(*args, **kwargs)) as deltas:
            async for delta in deltas:
                yield delta
                raise RequestFailedError("request 'x' failed in the engine: the sampler found no token")

    engine.generate = failing
    yield
    del engine.generate


def test_a_chat_stream_reply_cut_by_a_request_failure_ends_with_the_error_marker(served, failing_after_first_delta):
    server, _ = served
    with session_client(server.url) as client:
        response = client.post("/chat_stream", json={"user_input": "Hello there"})
        assert response.status_code == 200
        segments = read_chat_stream(response)  # still ends with <::EOS::>: old clients parse it
        reply, _, reason = segments[-1].partition(ERROR_MARKER)
        assert reason == "request 'x' failed in the engine: the sampler found no token"
        assert all(ERROR_MARKER not in segment for segment in segments[:-1])
        assert segments[-2] == reply  # the error segment repeats the reply so far


def test_the_session_goes_on_after_a_failed_reply(served):
    server, chat_stream = served
    with session_client(server.url) as client:
        response = client.post("/chat_stream", json={"user_input": "Hello again"})
        assert response.status_code == 200 and ERROR_MARKER not in response.text
    assert chat_stream.engine.is_running and httpx.get(server.url + "/health").status_code == 200


def test_a_v1_stream_cut_by_a_request_failure_ends_with_an_error_event(served, failing_after_first_delta):
    server, _ = served
    with httpx.stream("POST", server.url + "/v1/completions", timeout=30,
                      json={"prompt": "Hello", "max_tokens": 8, "stream": True}) as response:
        events = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    last = json.loads(events[-1])
    assert "failed in the engine" in last["error"]["message"]
    assert "[DONE]" not in events
