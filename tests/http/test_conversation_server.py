"""The conversation store inside `chatstream serve`'s app, over real HTTP:

- sessions only where needed: /health, /metrics, /v1, the page and its files carry no Set-Cookie
  and store nothing, also after 10,000 cookie-less requests;
- 20 concurrent /chat_stream requests over 5 + 5 conversations of two sessions end with every
  conversation's turns complete, in order, unmixed and invisible to the other session, on the
  memory, SQLite and Redis backends alike;
- Redis down: 503 with a clear error where the store is needed, while /v1 and /health keep serving,
  and everything works again once Redis is back.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from chatstream.conversations import open_store
from conversation_servers import mock_server, tiny_server
from live_server import read_chat_stream, session_client
from serve_process import ServeProcess

COOKIE_FREE = [("GET", "/health"), ("GET", "/metrics"), ("GET", "/v1/models"), ("GET", "/"), ("GET", "/chatstream.js"),
               ("GET", "/webui/app.js"), ("GET", "/get_load"), ("GET", "/get_resource_usage"),
               ("GET", "/conversations"), ("GET", "/get_generation_params"), ("GET", "/get_prompt"),
               ("GET", "/openapi.json"), ("POST", "/clear_context")]
V1_CHAT = {"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "Hello there"}]}


def _size(url: str):
    async def read():
        async with await open_store(url) as store:
            return await store.size()

    return asyncio.run(read())


def test_routes_that_need_no_session_set_no_cookie_and_store_nothing(tiny_model_factory, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'conversations.sqlite3'}"
    with tiny_server(tiny_model_factory, url) as live:
        responses = [httpx.request(method, live.url + path) for method, path in COOKIE_FREE]
        responses.append(httpx.post(live.url + "/v1/chat/completions", json=V1_CHAT))
        responses.append(httpx.post(live.url + "/v1/chat/completions", json={**V1_CHAT, "stream": True}))
        responses.append(httpx.post(live.url + "/v1/completions", json={"model": "tiny", "prompt": "Hi", "max_tokens": 2}))
        for response in responses:
            assert response.status_code == 200, (response.request.url, response.text)
            assert "set-cookie" not in response.headers, response.request.url
        assert _size(url).sessions == 0
        # A route that needs one makes one session, with its cookie.
        turn = httpx.post(live.url + "/chat_stream", json={"user_input": "hello"})
        assert turn.status_code == 200 and turn.headers["set-cookie"].startswith("sid=")
        read_chat_stream(turn)
        size = _size(url)
        assert (size.sessions, size.conversations, size.messages) == (1, 1, 2)


@pytest.mark.slow
def test_ten_thousand_cookie_less_requests_leave_the_store_as_it_was(tiny_model_dir, tmp_path) -> None:
    data = tmp_path / "data"
    server = ServeProcess(["--model", str(tiny_model_dir), "--chat-prompt", "chat_template", "--num-kv-blocks", "64",
                           "--max-new-tokens", "4"], data, tmp_path / "serve.log", log_level="WARNING")
    url = f"sqlite:///{data / 'conversations.sqlite3'}"
    try:
        server.start()
        with session_client(server.url) as client:
            read_chat_stream(client.post("/chat_stream", json={"user_input": "one stored turn"}))
        before = _size(url)
        paths = ["/health", "/metrics", "/v1/models", "/get_load"]

        async def hammer() -> tuple[int, int]:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                async def worker(offset: int) -> tuple[int, int]:  # 16 connections, 625 requests each
                    ok = cookies = 0
                    for i in range(625):
                        response = await client.get(paths[(offset + i) % len(paths)])
                        ok += response.status_code == 200
                        cookies += "set-cookie" in response.headers
                    return ok, cookies

                results = await asyncio.gather(*(worker(offset) for offset in range(16)))
            return sum(ok for ok, _ in results), sum(cookies for _, cookies in results)

        ok, cookies = asyncio.run(hammer())
        assert (ok, cookies) == (10_000, 0)
        assert _size(url) == before
    finally:
        server.close()


def _backend_url(backend: str, tmp_path, redis_server) -> str:
    if backend == "memory":
        return "memory"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'conversations.sqlite3'}"
    return redis_server.url(db=3) + "?prefix=concurrency"


@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis"])
def test_twenty_concurrent_turns_over_two_sessions_stay_whole_and_apart(backend, tmp_path, request) -> None:
    redis_server = request.getfixturevalue("redis_server") if backend == "redis" else None
    with mock_server(_backend_url(backend, tmp_path, redis_server), num_of_concurrent_executions=4,
                     max_queue_size=20) as live, session_client(live.url) as a, session_client(live.url) as b:
        owned = {name: [client.post("/conversations", json={"title": f"{name}{i}"}).json()["id"] for i in range(5)]
                 for name, client in (("a", a), ("b", b))}
        jobs = [(client, name, conversation_id, turn) for turn in range(2)
                for name, client in (("a", a), ("b", b)) for conversation_id in owned[name]]
        statuses: list[int] = []
        lock = threading.Lock()

        def send(job) -> None:
            client, name, conversation_id, turn = job
            text = f"{name} {conversation_id[:8]} turn {turn} " + "word " * 5
            response = client.post("/chat_stream", json={"user_input": text, "conversation_id": conversation_id})
            if response.status_code == 200:
                assert read_chat_stream(response)[-1] == text.strip()
            with lock:
                statuses.append(response.status_code)

        with ThreadPoolExecutor(20) as pool:
            list(pool.map(send, jobs))
        assert statuses == [200] * 20
        for name, client, other in (("a", a, b), ("b", b, a)):
            listed = {c["id"] for c in client.get("/conversations").json()["conversations"]}
            assert listed == set(owned[name])
            for conversation_id in owned[name]:
                messages = client.get(f"/conversations/{conversation_id}").json()["messages"]
                assert [m["role"] for m in messages] == ["user", "assistant"] * 2
                assert all(m["status"] == "complete" for m in messages)
                texts = [m["text"] for m in messages]
                assert texts[1] == texts[0].strip() and texts[3] == texts[2].strip()  # each reply its own turn's
                assert sorted(t.split(" turn ")[1][0] for t in texts[::2]) == ["0", "1"]
                assert all(t.startswith(f"{name} {conversation_id[:8]} ") for t in texts)  # nothing mixed in
                assert other.get(f"/conversations/{conversation_id}").status_code == 404


def test_redis_down_is_a_503_where_the_store_is_needed_and_v1_keeps_serving(tiny_model_factory,
                                                                           redis_server_factory) -> None:
    redis = redis_server_factory(persistent=True)
    with tiny_server(tiny_model_factory, redis.url()) as live, session_client(live.url) as client:
        conversation_id = client.post("/conversations", json={}).json()["id"]
        read_chat_stream(client.post("/chat_stream", json={"user_input": "hello", "conversation_id": conversation_id}))
        # The reply is stored just after its stream ends: stop the store only once it holds it, or the turn
        # stays open and the request after the restart meets a 409 instead of the conversation it expects.
        deadline = time.monotonic() + 10
        while (len(client.get(f"/conversations/{conversation_id}").json()["messages"]) < 2
               and time.monotonic() < deadline):
            time.sleep(0.05)
        redis.stop()
        for response in (client.post("/chat_stream", json={"user_input": "hi", "conversation_id": conversation_id}),
                         client.post("/chat_stream", json={"user_input": "hi"}),
                         client.get("/conversations"), client.post("/conversations", json={}),
                         client.get(f"/conversations/{conversation_id}"), client.get("/get_prompt"),
                         httpx.post(live.url + "/chat_stream", json={"user_input": "a new browser"})):
            assert response.status_code == 503, (response.request.url, response.text)
            assert response.json()["error"] == "store_unavailable"
            assert "conversation store is unavailable" in response.json()["detail"]
            assert response.headers["retry-after"]
        assert httpx.get(live.url + "/health").status_code == 200
        completion = httpx.post(live.url + "/v1/chat/completions", json=V1_CHAT)
        assert completion.status_code == 200 and completion.json()["choices"][0]["message"]["content"] is not None
        assert httpx.get(live.url + "/get_load").status_code == 200
        redis.start()  # the same port and data: the store is back, with the conversation
        messages = client.get(f"/conversations/{conversation_id}").json()["messages"]
        assert [m["text"] for m in messages][:1] == ["hello"]
        turn = client.post("/chat_stream", json={"user_input": "again", "conversation_id": conversation_id})
        assert turn.status_code == 200
        read_chat_stream(turn)
