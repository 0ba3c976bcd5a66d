"""Admission through real HTTP: with N=2 and Q=5, ten simultaneous requests give exactly two
running, five waiting (served later, in order) and three 429s at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from fastapi import FastAPI, Request

from chatstream import ChatPromptTogetherRedPajamaINCITEChat, ChatStream
from live_server import LiveServer, read_chat_stream, session_client


def _app(**kwargs) -> tuple[FastAPI, ChatStream]:
    chat_stream = ChatStream(use_mock_response=True, chat_prompt_clazz=ChatPromptTogetherRedPajamaINCITEChat,
                             **kwargs)
    app = FastAPI()
    chat_stream.append_middlewares(app)
    chat_stream.append_apis(app, {"all": True})
    return app, chat_stream


def test_ten_simultaneous_requests_two_run_five_wait_three_are_refused():
    app, chat_stream = _app(num_of_concurrent_executions=2, max_queue_size=5,
                            mock_params={"type": "echo", "time_per_token_sec": 0.05})
    loads_at_refusal: list[dict] = []
    all_sent = threading.Barrier(10)
    with LiveServer(app) as server:
        def one(i: int) -> tuple[int, int, object]:
            with session_client(server.url) as client:
                all_sent.wait()
                words = " ".join(f"w{i}_{k}" for k in range(12))
                response = client.post("/chat_stream", json={"user_input": words, "regenerate": False})
                if response.status_code == 429:
                    loads_at_refusal.append(client.get("/get_load").json()["chatstream_workers"][0])
                    return i, 429, (response.json(), response.headers.get("retry-after"))
                return i, response.status_code, read_chat_stream(response)[-1]

        with ThreadPoolExecutor(10) as pool:
            results = list(pool.map(one, range(10)))
        final_load = httpx.get(server.url + "/get_load").json()["chatstream_workers"][0]

    refused = [r for r in results if r[1] == 429]
    served = [r for r in results if r[1] == 200]
    assert len(refused) == 3 and len(served) == 7
    for _, _, (body, retry_after) in refused:
        assert body["error"] == "too_many_requests" and int(retry_after) >= 1
    for load in loads_at_refusal:  # the refusals came while the others ran and waited
        assert (load["processing"], load["waiting"]) == (2, 5)
    for i, _, reply in served:  # the echo mock replies with the user's words, whole
        assert reply == " ".join(f"w{i}_{k}" for k in range(12))
    assert (final_load["processing"], final_load["waiting"]) == (0, 0)


def test_queue_full_answers_200_for_old_clients_when_asked():
    app, _ = _app(num_of_concurrent_executions=1, max_queue_size=0, too_many_request_as_http_error=False,
                  mock_params={"type": "long", "time_per_token_sec": 0.02})
    with LiveServer(app) as server, session_client(server.url) as first, session_client(server.url) as second:
        with first.stream("POST", "/chat_stream", json={"user_input": "hi"}) as running:
            chunks = running.iter_text()  # kept open: dropping the iterator would close the connection
            next(chunks)  # streaming: the one slot is taken
            refused = second.post("/chat_stream", json={"user_input": "hi"})
    assert refused.status_code == 200 and refused.json()["error"] == "too_many_requests"


def test_requests_are_served_without_start_queue_worker_and_with_a_lifespan():
    from contextlib import asynccontextmanager

    chat_stream = ChatStream(use_mock_response=True, chat_prompt_clazz=ChatPromptTogetherRedPajamaINCITEChat,
                             mock_params={"type": "echo", "time_per_token_sec": 0})
    started = []

    @asynccontextmanager
    async def lifespan(app):
        await chat_stream.start_queue_worker()
        started.append(True)
        yield

    for app in (FastAPI(), FastAPI(lifespan=lifespan)):
        chat_stream.append_middlewares(app)

        @app.post("/chat_stream")
        async def stream_api(request: Request):
            return await chat_stream.handle_chat_stream_request(request)

        with LiveServer(app) as server, session_client(server.url) as client:
            reply = read_chat_stream(client.post("/chat_stream", json={"user_input": "hello there"}))
        assert reply[-1] == "hello there"
    assert started == [True]
