"""SIGTERM drains: new requests get 503, /health answers 503 "draining" (it does not refuse the
connection), running streams finish, or are cut after --shutdown-timeout with a final error."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import pytest

from chatstream.facade.chat_output import ERROR_MARKER
from chatstream.http.drain import SHUTDOWN_REASON, DrainingServer
from live_server import read_chat_stream
from tiny_server import tiny_app, wait_ready
from live_server import LiveServer

STEP_SEC = 0.05  # each engine step takes at least this long, so replies last long enough to be seen


def _slow_steps(chat_stream) -> None:
    core = chat_stream.engine.core
    step = core.step

    def slow_step():
        time.sleep(STEP_SEC)
        return step()

    core.step = slow_step


def _serve(tiny_model_factory, shutdown_timeout: float, max_new_tokens: int):
    app = tiny_app(tiny_model_factory, shutdown_timeout=shutdown_timeout,
                   chat_stream_options={"max_new_tokens": max_new_tokens, "temperature": 0.0})
    drain = app.state.server.drain
    server = LiveServer(app, server_factory=lambda config: DrainingServer(config, drain))
    return app, server


def _stream_in_thread(url: str, path: str, body: dict, out: dict) -> threading.Thread:
    def run() -> None:
        with httpx.stream("POST", url + path, json=body, timeout=60) as response:
            out["status"] = response.status_code
            out["text"] = ""
            for text in response.iter_text():
                out["text"] += text
                out.setdefault("first", time.monotonic())
        out["done"] = True

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_sigterm_lets_running_streams_finish_and_refuses_new_requests(tiny_model_factory):
    app, server = _serve(tiny_model_factory, shutdown_timeout=60, max_new_tokens=40)
    with server:
        wait_ready(server.url)
        _slow_steps(app.state.server.chat_stream)
        out: dict = {}
        thread = _stream_in_thread(server.url, "/chat_stream", {"user_input": "Tell me a story"}, out)
        _wait(lambda: "first" in out)
        server.server.handle_exit(signal.SIGTERM, None)
        _wait(lambda: app.state.server.drain.draining)
        health = httpx.get(server.url + "/health")
        assert health.status_code == 503 and health.json()["status"] == "draining"
        refused = httpx.post(server.url + "/chat_stream", json={"user_input": "Hi"})
        assert refused.status_code == 503 and refused.json()["error"] == "shutting_down"
        assert not out.get("done"), "the stream should still be running while the server drains"
        thread.join(60)
        segments = out["text"].split("<::EOS::>")
        assert out["status"] == 200 and segments[-1] == "" and ERROR_MARKER not in out["text"]
        server.thread.join(30)
        assert not server.thread.is_alive(), "the server exits once the streams are done"


def test_streams_still_running_at_the_shutdown_timeout_end_with_an_error(tiny_model_factory):
    app, server = _serve(tiny_model_factory, shutdown_timeout=0.5, max_new_tokens=400)
    with server:
        wait_ready(server.url)
        _slow_steps(app.state.server.chat_stream)
        chat: dict = {}
        sse: dict = {}
        threads = [_stream_in_thread(server.url, "/chat_stream", {"user_input": "Tell me a long story"}, chat),
                   _stream_in_thread(server.url, "/v1/completions",
                                     {"prompt": "Once", "max_tokens": 400, "stream": True}, sse)]
        _wait(lambda: "first" in chat and "first" in sse)
        server.server.handle_exit(signal.SIGTERM, None)
        for thread in threads:
            thread.join(60)
        segments = chat["text"].split("<::EOS::>")
        assert segments[-1] == "" and segments[-2].endswith(ERROR_MARKER + SHUTDOWN_REASON)
        events = [line[len("data: "):] for line in sse["text"].splitlines() if line.startswith("data: ")]
        assert SHUTDOWN_REASON in json.loads(events[-1])["error"]["message"]
        server.thread.join(30)
        assert not server.thread.is_alive()
        chat_stream = app.state.server.chat_stream
        assert chat_stream.admission.num_running == 0
