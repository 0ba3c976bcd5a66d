"""What one request may cost before a handler sees it: body size (413), body arrival time (408), head
arrival time (the connection closes), and a client that leaves mid-body (no traceback). Also for
an embedded app that uses `append_middlewares`."""

from __future__ import annotations

import logging
import socket
import time

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from chatstream import ChatPromptDatabricksDolly, ChatStream
from chatstream.http.connection_limits import header_timeout_protocol
from live_server import LiveServer
from tiny_server import tiny_server

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(tiny_model_factory):
    with tiny_server(tiny_model_factory, max_request_bytes=LIMIT, body_timeout=1.0,
                     server_options={"http": header_timeout_protocol(1.0)}) as (server, _app):
        yield server


def test_a_body_over_the_limit_is_a_413_before_it_is_read(server):
    body = b'{"prompt": "' + b"a" * (LIMIT + 10) + b'"}'
    for path in ("/v1/completions", "/chat_stream", "/set_system_prompt"):
        response = httpx.post(server.url + path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 413, path
        assert response.json()["error"] == "request_too_large" and str(LIMIT) in response.json()["detail"]
    assert httpx.get(server.url + "/health").status_code == 200


def test_a_chunked_body_over_the_limit_is_a_413(server):
    def chunks():
        for _ in range(LIMIT // 1024 + 5):
            yield b"a" * 1024

    response = httpx.post(server.url + "/v1/completions", content=chunks(),
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def _raw(server, request: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(20)
    sock.sendall(request)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_body_that_trickles_in_is_a_408(server):
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n")
    sock = _raw(server, head + b'{"prompt": ')
    try:
        answer = _read_all(sock)  # the rest never comes
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer


def test_a_head_that_never_completes_closes_the_connection(server):
    sock = _raw(server, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    try:
        assert _read_all(sock) == b""  # closed by the server, not by this test's timeout
    finally:
        sock.close()
    assert httpx.get(server.url + "/health").status_code == 200  # kept-alive clients are unaffected


def test_a_client_that_leaves_mid_body_leaves_no_traceback(server, caplog):
    caplog.set_level(logging.DEBUG)
    head = (b"POST /chat_stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n")
    sock = _raw(server, head + b'{"user_input": "')
    time.sleep(0.2)
    sock.close()
    time.sleep(0.5)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    assert not any("ClientDisconnect" in (r.exc_text or "") for r in caplog.records)
    assert httpx.get(server.url + "/health").status_code == 200


def test_append_middlewares_limits_an_embedded_app():
    chat_stream = ChatStream(use_mock_response=True, chat_prompt_clazz=ChatPromptDatabricksDolly,
                             mock_params={"type": "echo", "initial_wait_sec": 0, "time_per_token_sec": 0})
    app = FastAPI()
    chat_stream.append_middlewares(app, {"max_request_bytes": 1000})
    chat_stream.append_apis(app, {"include": ["chat_stream"]})

    @app.post("/echo")
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"bytes": len(await request.body())})

    with LiveServer(app) as server:
        assert httpx.post(server.url + "/echo", content=b"x" * 999).json() == {"bytes": 999}
        response = httpx.post(server.url + "/echo", content=b"x" * 1001)
        assert response.status_code == 413 and response.json()["error"] == "request_too_large"
        response = httpx.post(server.url + "/chat_stream", json={"user_input": "x" * 2000})
        assert response.status_code == 413
        response = httpx.post(server.url + "/chat_stream", json={"user_input": "hello"})
        assert response.status_code == 200 and "hello" in response.text
