"""The original's documented usage, as its docs and examples write it, on this package.

Each test names the original document it follows (the original repository's doc/en/*.md and example/*.py, written
again here in this project's words):

- chatstream-initialize.md: the options table's literal (`model=None`, `mock_params={type: "round"}`,
  `request_handler=SimpleSessionRequestHandler()`, ...) constructs a ChatStream first; it is configured after;
- mock_response.md: the Generator Mock's `mock_params` (echo, round, long, the initial wait);
- example/console_chat_mock.py: its `mock_type="round"` keyword is refused (a TypeError), with or without a model;
- handle-request-finish-callback.md and handle-request-intercept.md: the finish callback reads the session's
  ChatPrompt; an intercepted body is passed on;
- console-chat.md: `handle_console_input` yields `(response_text, updated_text, pos)`;
- queue-system.md: N generations run, Q wait, the rest are refused with "too_many_requests";
- logging.md: `chat_stream.logger.setLevel(logging.DEBUG)` shows the request trace with short request ids;
- middleware-session.md and the README's quick start: FastSessionMiddleware added by hand plus one route serves a
  multi-turn chat (the original answered 500 there);
- example/web_server_mock_dev_auto.py: a hand-written /set_feedback route receives the feedback.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import urllib.parse
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastsession import FastSessionMiddleware, MemoryStore

from chatstream import ChatPromptTogetherRedPajamaINCITEChat as ChatPrompt
from chatstream import ChatStream, SimpleSessionRequestHandler
from chatstream.facade.chat_logging import RequestLabelFilter
from chatstream.mock_response_example_text import sample_text_array, sample_text_long
from live_server import OPEN_ROLES, LiveServer, read_chat_stream, session_client


def _app(chat_stream: ChatStream, callback: Any = None) -> FastAPI:
    app = FastAPI()
    app.add_middleware(FastSessionMiddleware, secret_key="your-session-secret-key", store=MemoryStore(),
                       http_only=True, secure=False)

    @app.post("/chat_stream")
    async def stream_api(request: Request) -> Any:
        request_body = await request.body()  # intercept: read the body, pass it on
        return await chat_stream.handle_chat_stream_request(request, request_body, callback=callback)

    @app.get("/get_prompt")
    async def get_prompt(request: Request) -> Any:
        return await chat_stream.handle_get_prompt_request(request)

    return app


def test_initialize_with_the_options_tables_literal_then_configure() -> None:
    # chatstream-initialize.md
    chat_stream = ChatStream(
        model=None, tokenizer=None, device=None, num_of_concurrent_executions=2, max_queue_size=5,
        too_many_request_as_http_error=False, use_mock_response=False, mock_params={type: "round"},
        chat_prompt_clazz=None, max_new_tokens=256, context_len=1024, temperature=1.0, top_k=50, top_p=1.0,
        repetition_penalty=None, repetition_penalty_method="multiplicative", add_special_tokens=None,
        request_handler=SimpleSessionRequestHandler(), logger=None)
    with LiveServer(_app(chat_stream)) as live, session_client(live.url) as client:
        not_yet = client.post("/chat_stream", json={"user_input": "hello"})
        assert not_yet.status_code == 503 and "configure" in not_yet.json()["detail"]
        chat_stream.chat_prompt_clazz = ChatPrompt
        chat_stream.configure(use_mock_response=True, mock_params={type: "round", "time_per_token_sec": 0})
        first = read_chat_stream(client.post("/chat_stream", json={"user_input": "hello"}))[-1]
        second = read_chat_stream(client.post("/chat_stream", json={"user_input": "more"}))[-1]
    # {type: "round"} (the builtin as the key, as the docs write it) means "round": a numbered story per turn
    assert first.startswith("(1) ") and second.startswith("(2) ")
    assert first == " ".join(sample_text_array[0].split(" "))
    with pytest.raises(RuntimeError, match="already"):
        chat_stream.configure(use_mock_response=True)


def test_configure_a_model_later(tiny_model_factory: Any) -> None:
    model, tokenizer = tiny_model_factory("llama")
    chat_stream = ChatStream(chat_prompt_clazz=ChatPrompt, max_new_tokens=4, temperature=0.0)
    assert chat_stream.engine is None and not chat_stream.is_ready
    chat_stream.configure(model=model, tokenizer=tokenizer, num_kv_blocks=32)
    try:
        with LiveServer(_app(chat_stream)) as live, session_client(live.url) as client:
            response = client.post("/chat_stream", json={"user_input": "hello"})
            assert response.status_code == 200 and read_chat_stream(response)
    finally:
        chat_stream.shutdown()


@pytest.mark.parametrize("params, check", [
    ({"type": "echo", "initial_wait_sec": 0.3, "time_per_token_sec": 0}, lambda text: text == "one two three"),
    ({"type": "round", "time_per_token_sec": 0}, lambda text: text.startswith("(1) ")),
    ({"type": "long", "time_per_token_sec": 0}, lambda text: text == " ".join(sample_text_long.split(" "))),
    ({type: "echo", "time_per_token_sec": 0}, lambda text: text == "one two three"),
])
def test_mock_response_params(params: dict[Any, Any], check: Any) -> None:
    # mock_response.md
    chat_stream = ChatStream(use_mock_response=True, mock_params=params, chat_prompt_clazz=ChatPrompt)
    assert chat_stream.chat_generator.initial_wait_sec == params.get("initial_wait_sec", 0)
    with LiveServer(_app(chat_stream)) as live, session_client(live.url) as client:
        replies = read_chat_stream(client.post("/chat_stream", json={"user_input": "one two three"}))
    assert check(replies[-1])


def test_the_console_examples_mock_type_keyword_is_refused_with_or_without_a_model(tiny_model_factory: Any) -> None:
    # example/console_chat_mock.py passes mock_type="round"; the original's constructor refused it too.
    with pytest.raises(TypeError, match="mock_type.*mock_params"):
        ChatStream(use_mock_response=True, mock_type="round", chat_prompt_clazz=ChatPrompt)
    model, tokenizer = tiny_model_factory("llama")
    with pytest.raises(TypeError, match="mock_type"):
        ChatStream(model=model, tokenizer=tokenizer, mock_type="round", chat_prompt_clazz=ChatPrompt)
    with pytest.raises(TypeError, match="no_such_option"):
        ChatStream(no_such_option=1)


def test_the_finish_callback_reads_the_sessions_prompt() -> None:
    # handle-request-finish-callback.md, handle-request-intercept.md
    seen: list[tuple[str, str]] = []
    done = threading.Event()

    def callback_func(request: Request, message: str) -> None:
        chat_prompt = request.state.session.get_session().get("chat_prompt")
        seen.append((message, chat_prompt.create_prompt()))
        done.set()

    chat_stream = ChatStream(use_mock_response=True, mock_params={"type": "echo", "time_per_token_sec": 0},
                             chat_prompt_clazz=ChatPrompt)
    with LiveServer(_app(chat_stream, callback_func)) as live, session_client(live.url) as client:
        read_chat_stream(client.post("/chat_stream", json={"user_input": "hi there", "regenerate": False}))
        assert done.wait(10)
    assert seen == [("success", "<human>: hi there\n<bot>: hi there\n")]


def test_console_chat_tuples() -> None:
    # console-chat.md
    chat_stream = ChatStream(use_mock_response=True, mock_params={"type": "echo", "time_per_token_sec": 0},
                             chat_prompt_clazz=ChatPrompt)

    async def chat(text: str) -> list[tuple[str, str, str]]:
        return [chunk async for chunk in chat_stream.handle_console_input(text)]

    chunks = asyncio.run(chat("one two three"))
    assert [pos for _, _, pos in chunks] == ["begin", "mid", "end"]
    assert "".join(updated for _, updated, _ in chunks) == "one two three"
    assert chunks[-1][0] == "one two three<::EOS::>"


@pytest.mark.parametrize("as_http_error, status", [(True, 429), (False, 200)])
def test_queue_system(as_http_error: bool, status: int) -> None:
    # queue-system.md: 2 run, 5 wait, the next is refused
    chat_stream = ChatStream(use_mock_response=True, mock_params={"type": "echo", "time_per_token_sec": 0.05},
                             chat_prompt_clazz=ChatPrompt, num_of_concurrent_executions=2, max_queue_size=5,
                             too_many_request_as_http_error=as_http_error, client_roles=OPEN_ROLES)
    app = _app(chat_stream)
    chat_stream.append_apis(app, {"include": ["get_load"]})
    long_text = " ".join(["word"] * 40)
    with LiveServer(app) as live:
        results: list[Any] = []

        def send() -> None:
            with session_client(live.url) as client:
                results.append(client.post("/chat_stream", json={"user_input": long_text}))

        threads = [threading.Thread(target=send) for _ in range(7)]
        for thread in threads:
            thread.start()
        with session_client(live.url) as client:
            deadline = time.monotonic() + 20
            while chat_stream.admission.num_running + chat_stream.admission.num_waiting < 7:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            load = client.get("/get_load").json()["chatstream_workers"][0]
            refused = client.post("/chat_stream", json={"user_input": "one more"})
        for thread in threads:
            thread.join()
    assert (load["processing"], load["waiting"], load["max_processing"], load["max_waiting"]) == (2, 5, 2, 5)
    assert refused.status_code == status and refused.json()["error"] == "too_many_requests"
    assert all(r.status_code == 200 and read_chat_stream(r)[-1] == long_text for r in results)


def test_logging_debug_shows_the_trace_with_request_ids() -> None:
    # logging.md
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    chat_stream = ChatStream(use_mock_response=True, mock_params={"type": "echo", "time_per_token_sec": 0},
                             chat_prompt_clazz=ChatPrompt)
    collect = Collect()
    collect.setFormatter(logging.Formatter("%(req_id)s %(message)s"))
    collect.addFilter(RequestLabelFilter())  # what our own handler uses to print the request id
    chat_stream.logger.addHandler(collect)
    level = chat_stream.logger.level
    chat_stream.logger.setLevel(logging.DEBUG)
    try:
        with LiveServer(_app(chat_stream)) as live, session_client(live.url) as client:
            read_chat_stream(client.post("/chat_stream", json={"user_input": "hello"}))
            deadline = time.monotonic() + 10
            while not any("finished: success" in line for line in lines):
                assert time.monotonic() < deadline
                time.sleep(0.01)
    finally:
        chat_stream.logger.removeHandler(collect)
        chat_stream.logger.setLevel(level)
    assert any(line.startswith("req_id_") and "admitted" in line for line in lines), lines


def test_quick_start_session_middleware_by_hand_keeps_the_conversation() -> None:
    # middleware-session.md and the README's quick start (the original answered 500 here: its role check crashed
    # without its role middleware)
    chat_stream = ChatStream(use_mock_response=True, mock_params={"type": "echo", "time_per_token_sec": 0},
                             chat_prompt_clazz=ChatPrompt, client_roles=OPEN_ROLES)
    with LiveServer(_app(chat_stream)) as live, session_client(live.url) as client:
        for text in ("first question", "second question"):
            assert read_chat_stream(client.post("/chat_stream", json={"user_input": text}))[-1] == text
        prompt = urllib.parse.unquote(client.get("/get_prompt").json()["prompt"])
    assert prompt == ("<human>: first question\n<bot>: first question\n"
                      "<human>: second question\n<bot>: second question\n")


def test_a_hand_written_feedback_route_receives_the_feedback() -> None:
    # example/web_server_mock_dev_auto.py: append_apis without set_feedback, then its own route
    received: list[dict[str, Any]] = []
    chat_stream = ChatStream(use_mock_response=True, mock_params={"type": "echo", "time_per_token_sec": 0},
                             chat_prompt_clazz=ChatPrompt)
    app = FastAPI()
    chat_stream.append_middlewares(app)
    chat_stream.append_apis(app, {"exclude": ["set_feedback"], "web_ui_params": {"welcomeMessage": "hi"}})

    @app.post("/set_feedback")
    async def set_feedback_api(request: Request) -> Any:
        return await chat_stream.handle_set_feedback_request(request, {"on_feedback_received": received.append})

    with LiveServer(app) as live, session_client(live.url) as client:
        response = client.post("/chat_stream", json={"user_input": "rate me"})
        message_id = response.headers["x-chatstream-last-generated-message-id"]
        read_chat_stream(response)
        answer = client.post("/set_feedback", json={"is_like": True, "message_id": message_id,
                                                    "form_data": {"comment": "good"}})
    assert answer.json() == {"success": True, "message": "success", "target_message_id": message_id}
    assert received[0]["target_message"] == "rate me" and received[0]["form_data"] == {"comment": "good"}
    assert received[0]["prompt"] == "<human>: rate me\n<bot>: rate me\n"
