"""A user's code cannot take the server down.

A request handler, the finish callback, a ChatPrompt subclass, the output replacements and the request handler's
hooks are user code. For each way one of them can misbehave (raise, return the wrong type, never call the callback,
fail in the middle of a reply), 100 requests go to a real uvicorn server running a real engine (a tiny random
model), 8 at a time, each in a new session. Every request must be answered (the error the scenario expects, or a
reply), none may hang; afterwards /get_load shows nothing running or waiting, every KV block is free again (the
engine's stats snapshot), each failure's traceback was logged exactly once (nothing reached uvicorn), and once the
hook behaves again the next request gets a normal reply.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, StreamingResponse

from chatstream import ChatPromptTogetherRedPajamaINCITEChat, ChatStream, SimpleSessionRequestHandler
from chatstream.facade.chat_output import ERROR_MARKER
from live_server import OPEN_ROLES, LiveServer, session_client

pytestmark = pytest.mark.slow  # 16 scenarios x 100 requests through a real engine

NUM_REQUESTS = 100
NUM_CLIENTS = 8
FINISH = "<::EOS::>"


class LogCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)  # Handler.handle holds the handler's own lock here

    def tracebacks(self) -> int:
        return sum(1 for r in self.records if r.exc_info)

    def errors(self) -> int:
        return sum(1 for r in self.records if r.levelno >= logging.ERROR)


# -- misbehaving user code -------------------------------------------------------------------------------------------


class FlagPrompt(ChatPromptTogetherRedPajamaINCITEChat):
    """The RedPajama preset; `broken` names the hook that misbehaves while it is set."""

    broken: str | None = None

    def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
        if self.broken == "create_prompt":
            raise ValueError("create_prompt is broken")
        return super().create_prompt(opts)

    def build_initial_prompt(self, chat_prompt: Any) -> None:
        if self.broken == "build_initial_prompt":
            raise KeyError("build_initial_prompt is broken")

    def get_stop_strs(self) -> Any:
        if self.broken == "stop_strs_type":
            return "<human>"  # a str, not a list of them
        return super().get_stop_strs()

    def get_replacement_when_output(self) -> Any:
        if self.broken == "replacement_raises":
            raise RuntimeError("replacement table unavailable")
        if self.broken == "replacement_type":
            return [("only-one",)]
        return super().get_replacement_when_output()

    def set_responder_last_msg(self, message: str | None) -> None:
        if self.broken == "mid_reply" and message:
            raise RuntimeError("cannot store the reply")
        super().set_responder_last_msg(message)


class RaisingHandler(SimpleSessionRequestHandler):
    async def process_request(self, request: Request, request_body: bytes, streaming_finished_callback: Any) -> Any:
        raise RuntimeError("the database is down")


class WrongTypeHandler(SimpleSessionRequestHandler):
    async def process_request(self, request: Request, request_body: bytes, streaming_finished_callback: Any) -> Any:
        return {"reply": "a dict, not a Response"}


class OwnJsonHandler(SimpleSessionRequestHandler):
    async def process_request(self, request: Request, request_body: bytes, streaming_finished_callback: Any) -> Any:
        return JSONResponse({"reply": "answered without the callback"})


class KeyRaisingHandler(SimpleSessionRequestHandler):
    def conversation_key(self, request: Request) -> str | None:
        raise LookupError("no conversation key")


class OriginalShapeHandler(SimpleSessionRequestHandler):
    """Streams `self.generate(...)` in a plain StreamingResponse, as handlers written for the original do; `mode`
    picks how its own finish callback misbehaves."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    async def process_request(self, request: Request, request_body: bytes, streaming_finished_callback: Any) -> Any:
        session = request.state.session.get_session()
        chat_prompt = session.get("chat_prompt") or self.new_chat_prompt()
        session["chat_prompt"] = chat_prompt
        chat_prompt.add_requester_msg(json.loads(request_body)["user_input"])
        chat_prompt.add_responder_msg(None)

        async def finished(message: str) -> None:
            if self.mode == "callback_raises":
                raise RuntimeError("the handler's callback is broken")
            if self.mode != "never_calls_back":
                await streaming_finished_callback(request, message)

        chunks = self.generate(chat_prompt, finished, request, None, str(uuid.uuid4()))
        if self.mode == "stream_raises":
            chunks = _raise_after(chunks, 2)
        return StreamingResponse(chunks, media_type="text/plain")


async def _raise_after(chunks: Any, count: int) -> Any:
    seen = 0
    async for chunk in chunks:
        yield chunk
        seen += 1
        if seen == count:
            raise RuntimeError("the handler's stream broke")


def _raising_callback(request: Request, message: str) -> None:
    raise ZeroDivisionError("the finish callback is broken")


async def _raising_async_callback(request: Request, message: str) -> None:
    raise ZeroDivisionError("the async finish callback is broken")


@dataclass(frozen=True)
class Scenario:
    name: str
    expect: str  # "error": a 500 JSON error; "reply": a 200 answer; "cut": a reply ending with the error notice
    tracebacks_per_request: int
    handler: Callable[[], Any] | None = None
    prompt_broken: str | None = None
    callback: Callable[..., Any] | None = None


SCENARIOS = [
    Scenario("handler raises", "error", 1, handler=RaisingHandler),
    Scenario("handler returns a dict", "error", 0, handler=WrongTypeHandler),
    Scenario("handler answers without the callback", "reply", 0, handler=OwnJsonHandler),
    Scenario("handler never calls the callback", "reply", 0, handler=lambda: OriginalShapeHandler("never_calls_back")),
    Scenario("handler's own callback raises", "reply", 1, handler=lambda: OriginalShapeHandler("callback_raises")),
    Scenario("handler's stream raises mid-reply", "reply", 1, handler=lambda: OriginalShapeHandler("stream_raises")),
    Scenario("conversation_key raises", "error", 1, handler=KeyRaisingHandler),
    Scenario("finish callback raises", "reply", 1, callback=_raising_callback),
    Scenario("async finish callback raises", "reply", 1, callback=_raising_async_callback),
    Scenario("create_prompt raises", "error", 1, prompt_broken="create_prompt"),
    Scenario("build_initial_prompt raises", "error", 1, prompt_broken="build_initial_prompt"),
    Scenario("get_stop_strs returns a str", "error", 1, prompt_broken="stop_strs_type"),
    Scenario("output replacement raises", "error", 1, prompt_broken="replacement_raises"),
    Scenario("output replacement returns bad pairs", "error", 1, prompt_broken="replacement_type"),
    Scenario("ChatPrompt fails mid-reply", "cut", 1, prompt_broken="mid_reply"),
    Scenario("original-shape handler behaving", "reply", 0, handler=lambda: OriginalShapeHandler("ok")),
]


@pytest.fixture(scope="module")
def served(tiny_model_factory: Any) -> Iterator[tuple[LiveServer, ChatStream, dict[str, Any]]]:
    model, tokenizer = tiny_model_factory("llama")
    chat_stream = ChatStream(model=model, tokenizer=tokenizer, chat_prompt_clazz=FlagPrompt, temperature=0.0,
                             num_of_concurrent_executions=4, max_queue_size=NUM_REQUESTS, max_new_tokens=6,
                             context_len=256, num_kv_blocks=64, client_roles=OPEN_ROLES)
    state: dict[str, Any] = {"callback": None}
    app = FastAPI()
    chat_stream.append_middlewares(app)
    chat_stream.append_apis(app, {"exclude": ["chat_stream"]})

    @app.post("/chat_stream")
    async def chat(request: Request) -> Any:
        return await chat_stream.handle_chat_stream_request(request, callback=state["callback"])

    with LiveServer(app) as live:
        yield live, chat_stream, state
    chat_stream.shutdown()


_clients = threading.local()


def _ask(url: str, text: str) -> tuple[int, str, str]:
    """POST /chat_stream in a new session (one client per thread: making a client costs more than a request)."""
    client = getattr(_clients, "client", None)
    if client is None or str(client.base_url).rstrip("/") != url:
        client = _clients.client = httpx.Client(base_url=url, timeout=60)
    client.cookies.clear()
    response = client.post("/chat_stream", json={"user_input": text})
    return response.status_code, response.headers.get("content-type", ""), response.text


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not reached: {what}"
        time.sleep(0.02)


def _check_answer(expect: str, status: int, content_type: str, body: str) -> None:
    if expect == "error":
        assert status == 500 and content_type.startswith("application/json"), (status, body)
        payload = json.loads(body)
        assert payload["error"] == "internal_server_error" and payload["detail"], payload
    elif expect == "cut":
        assert status == 200
        # The reply so far, then the error marker and the reason, as the last segment.
        assert body.endswith(FINISH) and ERROR_MARKER in body.split(FINISH)[-2], body[-120:]
    else:
        assert status == 200, (status, body[:200])


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_a_misbehaving_hook_never_holds_the_server(served: tuple[LiveServer, ChatStream, dict[str, Any]],
                                                  scenario: Scenario) -> None:
    live, chat_stream, state = served
    default_handler = chat_stream.request_handler
    counter, asgi_errors = LogCounter(), LogCounter()
    logging.getLogger("chatstream").addHandler(counter)
    logging.getLogger("uvicorn.error").addHandler(asgi_errors)
    try:
        if scenario.handler is not None:
            chat_stream.request_handler = scenario.handler()
        FlagPrompt.broken = scenario.prompt_broken
        state["callback"] = scenario.callback
        with ThreadPoolExecutor(NUM_CLIENTS) as pool:
            answers = list(pool.map(lambda i: _ask(live.url, f"question {i}"), range(NUM_REQUESTS)))
        assert len(answers) == NUM_REQUESTS  # every request answered: none raised a timeout
        for status, content_type, body in answers:
            _check_answer(scenario.expect, status, content_type, body)

        with session_client(live.url) as client:
            def idle() -> bool:
                worker = client.get("/get_load").json()["chatstream_workers"][0]
                return worker["processing"] == 0 and worker["waiting"] == 0
            _wait_for(idle, "/get_load back to 0 running, 0 waiting")
        engine = chat_stream.engine
        _wait_for(lambda: engine.stats.num_free_kv_blocks == engine.stats.num_kv_blocks, "every KV block free")
        _wait_for(lambda: counter.tracebacks() >= scenario.tracebacks_per_request * NUM_REQUESTS, "tracebacks")
        time.sleep(0.2)  # a second log line of the same failure would come right after the first
        assert counter.tracebacks() == scenario.tracebacks_per_request * NUM_REQUESTS
        assert asgi_errors.errors() == 0, [r.getMessage() for r in asgi_errors.records]
    finally:
        logging.getLogger("chatstream").removeHandler(counter)
        logging.getLogger("uvicorn.error").removeHandler(asgi_errors)
        chat_stream.request_handler = default_handler
        FlagPrompt.broken = None
        state["callback"] = None

    status, _, body = _ask(live.url, "and now?")  # the next request is served normally
    assert status == 200 and body.endswith(FINISH) and ERROR_MARKER not in body
