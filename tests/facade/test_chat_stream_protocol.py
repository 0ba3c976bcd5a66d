"""The /chat_stream protocol with the generator mock over real HTTP: wire format, callbacks,
regenerate, bad input, interception, per-session serialization, disconnects."""

from __future__ import annotations

import threading
import time
import urllib.parse

import httpx
import pytest
from fastapi import FastAPI, Request

from chatstream import ChatPromptTogetherRedPajamaINCITEChat, ChatStream
from live_server import OPEN_ROLES, LiveServer, read_chat_stream, session_client


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


@pytest.fixture
def server_and_calls():
    calls: list[str] = []
    chat_stream = ChatStream(use_mock_response=True, chat_prompt_clazz=ChatPromptTogetherRedPajamaINCITEChat,
                             num_of_concurrent_executions=1, max_queue_size=1,
                             mock_params={"type": "echo", "time_per_token_sec": 0.01}, client_roles=OPEN_ROLES)
    app = FastAPI()
    chat_stream.append_middlewares(app)
    chat_stream.append_apis(app, {"exclude": ["chat_stream"]})

    @app.post("/chat_stream")
    async def stream_api(request: Request):
        body = await request.body()  # an app that inspects the body first passes it on
        return await chat_stream.handle_chat_stream_request(
            request, body, callback=lambda req, message: calls.append(message))

    with LiveServer(app) as server:
        yield server, calls, chat_stream


def test_wire_format_history_and_the_finish_callback(server_and_calls):
    server, calls, chat_stream = server_and_calls
    with session_client(server.url) as client:
        response = client.post("/chat_stream", json={"user_input": "one two three", "regenerate": False})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        message_id = response.headers["x-chatstream-last-generated-message-id"]
        replies = read_chat_stream(response)
        assert replies == ["one", "one two", "one two three"]  # each chunk is the whole reply so far
        _wait_for(lambda: calls == ["success"])
        prompt = urllib.parse.unquote(client.get("/get_prompt").json()["prompt"])
        assert prompt == "<human>: one two three\n<bot>: one two three\n"
        feedback = client.post("/set_feedback", json={"is_like": True, "message_id": message_id, "form_data": {}})
        assert feedback.json() == {"success": True, "message": "success", "target_message_id": message_id}
        # regenerate: the last reply is produced again, the history keeps one exchange
        again = read_chat_stream(client.post("/chat_stream", json={"user_input": None, "regenerate": True}))
        assert again[-1] == "one two three"
        prompt = urllib.parse.unquote(client.get("/get_prompt").json()["prompt"])
        assert prompt == "<human>: one two three\n<bot>: one two three\n"
        assert client.post("/clear_context").json()["success"] is True
        assert client.get("/get_prompt").json()["prompt"] is None
    _wait_for(lambda: calls == ["success", "success"])


@pytest.mark.parametrize("body, field", [
    ({"regenerate": False}, "user_input"),
    ({"user_input": 42}, "user_input"),
    ({"user_input": "  "}, "user_input"),
    ({"user_input": "hi", "regenerate": "True"}, "regenerate"),
    ({"user_input": None, "regenerate": True}, "regenerate"),  # a new session has nothing to regenerate
    ([1, 2], None),
])
def test_bad_input_is_a_4xx_json_error_naming_the_field(server_and_calls, body, field):
    server, calls, chat_stream = server_and_calls
    with session_client(server.url) as client:
        response = client.post("/chat_stream", json=body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["error"] == "invalid_request" and payload.get("field") == field
    assert chat_stream.admission.num_running == 0


def test_invalid_json_and_invalid_generation_params(server_and_calls):
    server, _, _ = server_and_calls
    with session_client(server.url) as client:
        response = client.post("/chat_stream", content=b"{not json", headers={"content-type": "application/json"})
        assert response.status_code == 400 and response.json()["error"] == "invalid_request"
        bad = client.post("/set_generation_params", json={"temperature": 5})
        assert bad.status_code == 400
        assert bad.json()["field"] == "temperature" and "[0.0, 2.0]" in bad.json()["message"]
        assert client.post("/set_generation_params", json={"top_k_value": "many"}).json()["field"] == "top_k_value"
        assert client.post("/set_generation_params", json={"nucleus": 1}).status_code == 400
        good = client.post("/set_generation_params", json={"temperature": 0.5, "top_k_value": 10})
        assert good.json()["generation_params"] == {
            "temperature": 0.5, "top_k_value": 10, "top_p_value": 1.0, "max_new_tokens": 256,
            "repetition_penalty": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0}
        assert client.get("/get_generation_params").json()["generation_params"]["temperature"] == 0.5


def test_two_requests_of_one_session_run_one_after_the_other(server_and_calls):
    server, calls, _ = server_and_calls
    with session_client(server.url) as client:
        client.post("/set_generation_params", json={})  # makes the session (a route that needs one) and its cookie
        results: dict[str, list[str]] = {}

        def send(text: str) -> None:
            results[text] = read_chat_stream(client.post("/chat_stream", json={"user_input": text}))

        threads = [threading.Thread(target=send, args=(t,)) for t in ("alpha beta gamma", "delta epsilon")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        prompt = urllib.parse.unquote(client.get("/get_prompt").json()["prompt"])
    assert results["alpha beta gamma"][-1] == "alpha beta gamma" and results["delta epsilon"][-1] == "delta epsilon"
    exchanges = prompt.strip().split("\n")
    assert len(exchanges) == 4  # two whole exchanges, never interleaved
    assert {exchanges[0], exchanges[2]} == {"<human>: alpha beta gamma", "<human>: delta epsilon"}
    assert exchanges[1] == exchanges[0].replace("<human>", "<bot>")
    assert exchanges[3] == exchanges[2].replace("<human>", "<bot>")


def test_disconnects_free_the_slot_and_report_once(server_and_calls):
    server, calls, chat_stream = server_and_calls
    long_input = " ".join(f"w{i}" for i in range(400))  # echo: about 4 s of streaming
    with session_client(server.url) as streaming, session_client(server.url) as waiting:
        with streaming.stream("POST", "/chat_stream", json={"user_input": long_input}) as running:
            chunks = running.iter_text()
            next(chunks)
            # A second client queues behind it, then gives up before its turn.
            with pytest.raises(httpx.ReadTimeout):
                waiting.post("/chat_stream", json={"user_input": "x"}, timeout=0.5)
            _wait_for(lambda: calls == ["client_disconnected_before_streaming"])
            assert chat_stream.admission.num_waiting == 0
        # Leaving the `with` closed the streaming connection mid-reply.
        _wait_for(lambda: calls[-1] == "client_disconnected_while_streaming")
        assert calls.count("client_disconnected_while_streaming") == 1
        assert chat_stream.admission.num_running == 0
        prompt = urllib.parse.unquote(streaming.get("/get_prompt").json()["prompt"])
    partial = prompt.split("<bot>: ", 1)[1].rstrip("\n")
    assert partial and long_input.startswith(partial) and partial != long_input  # the partial reply is kept
