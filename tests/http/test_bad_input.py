"""Every bad input is a 4xx JSON naming the problem, never a 500, and never poisons a session:
malformed cookies, deep nesting, huge numbers, lone surrogates, loose types, the agent header,
oversized requests, and sampling values the engine cannot compute with."""

from __future__ import annotations

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer

from live_server import read_chat_stream, session_client
from tiny_server import tiny_server

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(tiny_model_factory):
    with tiny_server(tiny_model_factory, session_secret="test-secret") as (server, _app):
        yield server


def _post(url: str, path: str, body: str | bytes, **kwargs) -> httpx.Response:
    return httpx.post(url + path, content=body, headers={**JSON, **kwargs.pop("headers", {})}, timeout=30, **kwargs)


@pytest.mark.parametrize("cookie", [
    "abc",  # no signature at all: itsdangerous' BadSignature, which fastsession did not catch
    URLSafeTimedSerializer("test-secret").dumps([1, 2]),  # signed, but not a session id
    URLSafeTimedSerializer("test-secret").dumps({"sid": 5}),
    "x" * 3000,
])
def test_a_malformed_cookie_is_a_new_session(server, cookie):
    assert httpx.get(server.url + "/health", cookies={"sid": cookie}).status_code == 200
    response = httpx.post(server.url + "/chat_stream", json={"user_input": "Hello"}, cookies={"sid": cookie},
                          timeout=30)
    assert response.status_code == 200 and read_chat_stream(response)
    assert "sid=" in response.headers["set-cookie"]  # a fresh session
    assert httpx.get(server.url + "/get_load", cookies={"sid": cookie}).status_code in (200, 403)


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions", "/chat_stream",
                                  "/set_generation_params", "/set_system_prompt", "/set_feedback"])
def test_deep_nesting_is_a_400(server, path):
    response = _post(server.url, path, "[" * 100_000 + "]" * 100_000)
    assert response.status_code == 400, response.text
    assert "nested too deeply" in response.text
    shallow_but_deep = '{"user_input": ' + "[" * 40 + "]" * 40 + "}"
    assert _post(server.url, path, shallow_but_deep).status_code == 400


def test_a_huge_number_is_a_400(server):
    response = _post(server.url, "/v1/completions", '{"prompt": "Hi", "max_tokens": ' + "9" * 5000 + "}")
    assert response.status_code == 400 and "number" in response.json()["error"]["message"]
    for literal in ("NaN", "Infinity", "1e999"):
        response = _post(server.url, "/v1/completions", '{"prompt": "Hi", "temperature": ' + literal + "}")
        assert response.status_code == 400, literal


def test_a_lone_surrogate_is_a_400_naming_the_field(server):
    body = '{"model": "tiny", "messages": [{"role": "user", "content": "a\\ud800b"}], "max_tokens": 2}'
    response = _post(server.url, "/v1/chat/completions", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages[0].content" and "surrogate" in error["message"]
    response = _post(server.url, "/v1/completions", '{"prompt": "\\udfff", "max_tokens": 2}')
    assert response.status_code == 400
    response = _post(server.url, "/set_system_prompt", '{"system_prompt": "\\ud800"}')
    assert response.status_code == 400 and response.json()["field"] == "system_prompt"


def test_a_lone_surrogate_never_poisons_a_session(server):
    with session_client(server.url) as client:
        assert client.post("/chat_stream", json={"user_input": "Hello"}).status_code == 200
        response = client.post("/chat_stream", content='{"user_input": "a\\ud800b"}', headers=JSON)
        assert response.status_code == 400
        assert response.json()["field"] == "user_input" and "surrogate" in response.json()["detail"]
        # The session goes on as if the bad turn was never sent.
        response = client.post("/chat_stream", json={"user_input": "Still there?"})
        assert response.status_code == 200 and read_chat_stream(response)[-1]
        prompt = client.get("/get_prompt")
        assert prompt.status_code in (200, 403)


def test_loose_types_are_400s(server):
    response = _post(server.url, "/v1/completions", '{"prompt": "Hi", "stream": "yes"}')
    assert response.status_code == 400 and response.json()["error"]["param"] == "stream"
    response = _post(server.url, "/v1/completions", '{"prompt": [[false]], "max_tokens": 2}')
    assert response.status_code == 400 and response.json()["error"]["param"].startswith("prompt")
    response = _post(server.url, "/v1/completions", '{"prompt": "Hi", "n": 1.0}')
    assert response.status_code == 400 and response.json()["error"]["param"] == "n"
    response = _post(server.url, "/chat_stream", '{"user_input": "Hi", "regenerate": "True"}')
    assert response.status_code == 400 and response.json()["field"] == "regenerate"


def test_the_agent_header_on_chat_stream_says_a_session_is_needed(server):
    response = httpx.post(server.url + "/chat_stream", json={"user_input": "Hello"},
                          headers={"X-FastSession-Skip": "skip"}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"] == "session_required" and "X-FastSession-Skip" in response.json()["detail"]
    assert httpx.get(server.url + "/get_load").status_code in (200, 403)  # the server is fine


def test_one_request_cannot_spawn_more_sequences_than_the_server_runs(server):
    body = '{"prompt": ' + str([[1, 2, 3]] * 32) + ', "n": 8, "max_tokens": 1}'
    response = _post(server.url, "/v1/completions", body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "n"
    assert "at most 8" in response.json()["error"]["message"]
    response = _post(server.url, "/v1/completions", '{"prompt": [[1, 2], [3, 4]], "n": 4, "max_tokens": 1}')
    assert response.status_code == 200 and len(response.json()["choices"]) == 8


@pytest.mark.parametrize("field, value", [("top_p_value", 1e-300), ("repetition_penalty", 1e-300),
                                          ("temperature", 10 ** 40), ("max_new_tokens", 10 ** 40)])
def test_generation_params_the_engine_cannot_use_are_a_400(server, field, value):
    with session_client(server.url) as client:
        response = client.post("/set_generation_params", json={field: value})
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["success"] is False and body["field"] == field and field in body["message"]
        # Nothing was stored: the next turn is served normally.
        turn = client.post("/chat_stream", json={"user_input": "Hello"})
        assert turn.status_code == 200 and "<::ERROR::>" not in turn.text
    health = httpx.get(server.url + "/health")
    assert health.status_code == 200 and health.json()["status"] == "ready"
