"""/chat_stream and the original's conversation APIs over the conversation store, through real HTTP
(the generator mock): a request names its conversation or uses the session's current one; another
session's conversation is a 404 and never its content; waiting for a conversation's turn is
counted, bounded and left cleanly; the original's quick start (a user's own FastSessionMiddleware)
still works; bad cookies and agents without a session get clear answers, never a 500."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastsession import FastSessionMiddleware, MemoryStore

from chatstream import ChatPromptTogetherRedPajamaINCITEChat, ChatStream
from live_server import LiveServer, read_chat_stream, session_client

CONVERSATION_HEADER = "x-chatstream-conversation-id"
MESSAGE_HEADER = "x-chatstream-last-generated-message-id"
UNKNOWN = "0f8fad5b-d9cb-469f-a165-70867728950e"
# /get_prompt is closed by default (a server's prompts are the operator's); these tests read it.
OPEN = {"browser": {"apis": {"allow": "all", "auth_method": "nothing", "use_session": True}},
        "agent": {"apis": {"allow": "all", "auth_method": "nothing", "use_session": False}}}


def _chat_stream(**options: Any) -> ChatStream:
    mock = {"type": "echo", "time_per_token_sec": options.pop("time_per_token_sec", 0.001),
            "initial_wait_sec": options.pop("initial_wait_sec", 0.0)}
    options.setdefault("client_roles", OPEN)
    return ChatStream(use_mock_response=True, mock_params=mock, chat_prompt_clazz=ChatPromptTogetherRedPajamaINCITEChat,
                      **options)


def _app(chat_stream: ChatStream) -> FastAPI:
    app = FastAPI()
    chat_stream.append_middlewares(app)
    chat_stream.append_apis(app, {"all": True})
    return app


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with LiveServer(_app(_chat_stream())) as live:
        yield live.url


def _prompt(client: httpx.Client, conversation_id: str | None = None) -> str | None:
    params = {"conversation_id": conversation_id} if conversation_id else None
    prompt = client.get("/get_prompt", params=params).json()["prompt"]
    return None if prompt is None else urllib.parse.unquote(prompt)


def _turn(client: httpx.Client, text: str | None, conversation_id: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"user_input": text, "regenerate": text is None}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    response = client.post("/chat_stream", json=body)
    if response.status_code == 200:
        read_chat_stream(response)
    return response


def test_a_request_names_its_conversation_or_uses_the_sessions_current_one(server: str) -> None:
    with session_client(server) as client:
        first = _turn(client, "no id given")
        current = first.headers[CONVERSATION_HEADER]
        assert _turn(client, "still no id").headers[CONVERSATION_HEADER] == current
        a = client.post("/conversations", json={}).json()["id"]
        b = client.post("/conversations", json={"system": "You are terse."}).json()["id"]
        for conversation_id, word in ((a, "alpha"), (b, "beta"), (a, "again"), (b, "more")):
            response = _turn(client, word, conversation_id)
            assert response.headers[CONVERSATION_HEADER] == conversation_id
        assert _prompt(client, a) == "<human>: alpha\n<bot>: alpha\n<human>: again\n<bot>: again\n"
        assert _prompt(client, b) == "You are terse.<human>: beta\n<bot>: beta\n<human>: more\n<bot>: more\n"
        # Without an id the APIs act on the current conversation, which named ones did not change.
        assert _prompt(client) == "<human>: no id given\n<bot>: no id given\n<human>: still no id\n<bot>: still no id\n"

        # Regenerate, feedback and statistics act on the named conversation.
        regenerated = _turn(client, None, a)
        reply_id = regenerated.headers[MESSAGE_HEADER]
        assert _prompt(client, a).count("<bot>: again") == 1
        stats = client.get("/get_reply_stats", params={"message_id": reply_id, "conversation_id": a}).json()
        assert stats["finished"] is True and stats["text"] == "again"
        liked = client.post("/set_feedback", json={"message_id": reply_id, "is_like": True, "conversation_id": a})
        assert liked.json()["success"] is True
        assert client.get(f"/conversations/{a}").json()["messages"][-1]["feedback"] == {"is_like": True,
                                                                                      "form_data": None}
        # The reply is not in the current conversation.
        assert client.post("/set_feedback", json={"message_id": reply_id, "is_like": True}).status_code == 404

        # clear_context with an id empties that conversation; without one, the next turn starts a new one.
        assert client.post("/clear_context", json={"conversation_id": b}).json()["success"] is True
        assert client.get(f"/conversations/{b}").json()["messages"] == []
        assert client.post("/clear_context").json() == {"success": True, "message": "Context successfully cleared"}
        assert _prompt(client) is None
        assert client.post("/clear_context").json() == {"success": False, "message": "no context."}
        assert _turn(client, "fresh").headers[CONVERSATION_HEADER] not in (current, a, b)
        titles = {c["title"] for c in client.get("/conversations").json()["conversations"]}
        assert titles == {"no id given", "alpha", "beta", "fresh"}  # a cleared conversation keeps its title


def test_another_sessions_conversation_is_not_found_and_a_malformed_id_is_named(server: str) -> None:
    with session_client(server) as owner, session_client(server) as other:
        secret = owner.post("/conversations", json={}).json()["id"]
        reply_id = _turn(owner, "my secret words", secret).headers[MESSAGE_HEADER]
        other.post("/set_generation_params", json={})  # the other browser has a session of its own
        answers = [
            other.post("/chat_stream", json={"user_input": "hi", "conversation_id": secret}),
            other.post("/chat_stream", json={"regenerate": True, "conversation_id": secret}),
            other.get("/get_prompt", params={"conversation_id": secret}),
            other.get("/get_reply_stats", params={"message_id": reply_id, "conversation_id": secret}),
            other.post("/set_feedback", json={"message_id": reply_id, "is_like": True, "conversation_id": secret}),
            other.post("/clear_context", json={"conversation_id": secret}),
            other.post("/set_system_prompt", json={"system_prompt": "x", "conversation_id": secret}),
            other.get(f"/conversations/{secret}"),
            owner.post("/chat_stream", json={"user_input": "hi", "conversation_id": UNKNOWN}),
        ]
        for response in answers:
            assert response.status_code == 404, response.text
            assert response.json() == {"error": "not_found", "detail": f"conversation {response.json()['detail'][13:49]} not found"}
            assert "secret words" not in response.text
        for bad in ("x", "../etc", UNKNOWN.upper(), 42):
            response = owner.post("/chat_stream", json={"user_input": "hi", "conversation_id": bad})
            assert response.status_code == 400 and response.json()["field"] == "conversation_id", response.text
        assert _prompt(owner, secret) == "<human>: my secret words\n<bot>: my secret words\n"


def _load(url: str) -> dict[str, int]:
    return httpx.get(url + "/get_load").json()["chatstream_workers"][0]


def _held_replies(chat_stream: ChatStream) -> threading.Event:
    """Replies start only once the returned event is set (the test decides when the first one ends)."""
    gate = threading.Event()
    stream = chat_stream.chat_generator.stream

    async def held(reply: Any):
        await asyncio.to_thread(gate.wait, 60)
        async for chunk in stream(reply):
            yield chunk

    chat_stream.chat_generator.stream = held  # type: ignore[method-assign]
    return gate


def _wait_until(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _burst(client: httpx.Client, count: int, text: str) -> tuple[list[threading.Thread], list[int]]:
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(_turn(client, text).status_code))
               for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, statuses


def test_waiting_for_a_conversation_is_counted_bounded_and_refused_beyond() -> None:
    chat_stream = _chat_stream(num_of_concurrent_executions=2, max_queue_size=3)
    gate = _held_replies(chat_stream)
    with LiveServer(_app(chat_stream)) as live, session_client(live.url) as client:
        client.post("/set_generation_params", json={})
        threads, statuses = _burst(client, 50, "one two three")
        # While the first reply is held: one runs, three wait for the conversation (in the queue's
        # count, though run slots are free), and the other 46 were refused at once.
        _wait_until(lambda: len(statuses) == 46)
        assert statuses == [429] * 46
        assert (_load(live.url)["processing"], _load(live.url)["waiting"]) == (1, 3)
        gate.set()
        for thread in threads:
            thread.join()
        assert statuses.count(200) == 4
        assert _load(live.url)["waiting"] == 0 and _load(live.url)["processing"] == 0
        listed = client.get("/conversations").json()["conversations"][0]
        assert listed["num_messages"] == 8  # four whole exchanges, nothing half-open


def test_one_session_keeps_at_most_its_share_waiting() -> None:
    chat_stream = _chat_stream(num_of_concurrent_executions=4, max_queue_size=20, max_waiting_per_session=1)
    gate = _held_replies(chat_stream)
    with LiveServer(_app(chat_stream)) as live, session_client(live.url) as client, \
            session_client(live.url) as other:
        client.post("/set_generation_params", json={})
        threads, statuses = _burst(client, 10, "a b c")
        _wait_until(lambda: len(statuses) == 8)
        assert statuses == [429] * 8 and _load(live.url)["waiting"] == 1  # one runs, one waits
        other_thread, other_statuses = _burst(other, 1, "another session is not held up by it")
        gate.set()
        for thread in threads + other_thread:
            thread.join()
        assert statuses.count(200) == 2 and other_statuses == [200]


def test_a_client_that_leaves_while_waiting_opens_no_turn() -> None:
    chat_stream = _chat_stream(num_of_concurrent_executions=2, max_queue_size=10, time_per_token_sec=0.05)
    with LiveServer(_app(chat_stream)) as live, session_client(live.url) as client:
        conversation_id = client.post("/conversations", json={}).json()["id"]

        async def scenario() -> None:
            headers = {"Cookie": f"sid={client_cookie(client)}"}
            async with httpx.AsyncClient(base_url=live.url, headers=headers, timeout=30) as session:
                body = {"user_input": " ".join(["slow"] * 30), "conversation_id": conversation_id}
                running = asyncio.ensure_future(session.post("/chat_stream", json=body))
                await asyncio.sleep(0.3)
                leavers = [asyncio.ensure_future(session.post("/chat_stream", json={
                    "user_input": f"I leave {i}", "conversation_id": conversation_id})) for i in range(5)]
                await asyncio.sleep(0.5)
                assert _load(live.url)["waiting"] == 5
                for leaver in leavers:
                    leaver.cancel()
                await asyncio.gather(*leavers, return_exceptions=True)
                for _ in range(100):
                    if _load(live.url)["waiting"] == 0:
                        break
                    await asyncio.sleep(0.05)
                assert _load(live.url)["waiting"] == 0
                assert (await running).status_code == 200

        asyncio.run(scenario())
        time.sleep(0.2)
        messages = client.get(f"/conversations/{conversation_id}").json()["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert not any(m["text"].startswith("I leave") for m in messages)


def client_cookie(client: httpx.Client) -> str:
    """The signed session id the `session_client` keeps (it sends it by hand)."""
    response = client.post("/set_generation_params", json={})
    return response.request.headers["Cookie"].split("sid=", 1)[1].split(";", 1)[0]


def test_the_original_quick_start_with_its_own_fastsession_middleware() -> None:
    chat_stream = _chat_stream()
    app = FastAPI()
    app.add_middleware(FastSessionMiddleware, secret_key="your-session-secret-key", store=MemoryStore(),
                       http_only=True, secure=False)

    @app.post("/chat_stream")
    async def stream_api(request: Request):
        return await chat_stream.handle_chat_stream_request(request)

    @app.get("/get_prompt")
    async def get_prompt(request: Request):
        return await chat_stream.handle_get_prompt_request(request)

    @app.post("/clear_context")
    async def clear_context(request: Request):
        return await chat_stream.handle_clear_context_request(request)

    with LiveServer(app) as live, session_client(live.url) as client:
        assert read_chat_stream(client.post("/chat_stream", json={"user_input": "one two"}))[-1] == "one two"
        assert read_chat_stream(client.post("/chat_stream", json={"user_input": "three"}))[-1] == "three"
        assert _prompt(client) == "<human>: one two\n<bot>: one two\n<human>: three\n<bot>: three\n"
        assert client.post("/clear_context").json()["success"] is True
        assert _prompt(client) is None
        with session_client(live.url) as stranger:
            assert _prompt(stranger) is None


@pytest.mark.parametrize("cookie", ["garbage", "", "a.b.c", "0123456789abcdefghij.aaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbb",
                                    "\"unterminated", "sid=sid=sid"])
def test_a_malformed_or_unsigned_cookie_is_a_new_session_never_an_error(server: str, cookie: str) -> None:
    headers = {"Cookie": f"sid={cookie}"}
    for method, path, body in (("GET", "/get_load", None), ("GET", "/get_generation_params", None),
                               ("GET", "/conversations", None), ("POST", "/clear_context", {})):
        response = httpx.request(method, server + path, headers=headers, json=body)
        assert response.status_code == 200, (path, response.text)
        assert "set-cookie" not in response.headers  # nothing needed a session
    response = httpx.post(server + "/chat_stream", headers=headers, json={"user_input": "hello"})
    assert response.status_code == 200 and read_chat_stream(response)[-1] == "hello"
    assert response.headers["set-cookie"].startswith("sid=")  # a new session, with its own cookie


def test_a_cookie_signed_with_another_key_is_not_this_servers_session(server: str) -> None:
    from chatstream.facade.session_cookie import SessionCookie

    forged = SessionCookie("another key").header("A" * 32).split(";")[0]
    response = httpx.post(server + "/chat_stream", headers={"Cookie": forged}, json={"user_input": "hello"})
    assert response.status_code == 200
    assert response.headers["set-cookie"].split(";")[0] != forged


def test_an_agent_without_a_session_is_told_why(server: str) -> None:
    response = httpx.post(server + "/chat_stream", headers={"X-FastSession-Skip": "skip"}, json={"user_input": "hi"})
    assert response.status_code == 400
    assert "session" in response.json()["detail"] and "/v1/chat/completions" in response.json()["detail"]


def test_an_old_cookie_is_renewed_when_its_session_is_used() -> None:
    from chatstream.facade.session_cookie import RENEW_AFTER_S, SessionCookie

    chat_stream = _chat_stream(client_roles=None)  # no role table: /get_load reads no session
    app = FastAPI()
    chat_stream.append_middlewares(app, {"fast_session": {"secret_key": "a known key"}})
    chat_stream.append_apis(app, {"all": True})
    signer = SessionCookie("a known key")
    session_id = "B" * 32
    with LiveServer(app) as live:
        fresh = signer.header(session_id).split(";")[0]
        made = httpx.post(live.url + "/set_generation_params", headers={"Cookie": fresh}, json={"temperature": 0.5})
        # the session is made under the cookie's id (the new cookie may be signed a second later)
        assert made.headers["set-cookie"].split(";")[0].split(".")[0] == fresh.split(".")[0]
        used = httpx.post(live.url + "/set_generation_params", headers={"Cookie": fresh}, json={})
        assert "set-cookie" not in used.headers  # a fresh cookie stays as it is
        signer.signer.get_timestamp = lambda: int(time.time()) - 2 * 86400  # type: ignore[method-assign]
        old = signer.header(session_id).split(";")[0]
        assert signer.read(old.split("=", 1)[1])[1] > RENEW_AFTER_S
        renewed = httpx.get(live.url + "/get_generation_params", headers={"Cookie": old})
        assert renewed.json()["generation_params"]["temperature"] == 0.5  # the same session
        assert renewed.headers["set-cookie"].startswith("sid=") and renewed.headers["set-cookie"].split(";")[0] != old
        assert "set-cookie" not in httpx.get(live.url + "/get_load", headers={"Cookie": old}).headers  # not used
