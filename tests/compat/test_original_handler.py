"""A request handler written to the original's contract serves many users unchanged.

Checks: `OriginalStyleSessionHandler` (the original's `SimpleSessionRequestHandler` in its documented shape, see
`original_style_handler.py`) serves 20 browsers at once, 3 turns each, over real HTTP: every reply streams in the
/chat_stream format with its message id, each conversation keeps its own 3 exchanges, the handler's callback and the
finish callback see "success" 60 times, and the run slots all come back. Also regenerate, regenerate on an empty
conversation (the original's 500 through `return_internal_server_error_response`), a pass phrase (role promotion
reaches the client before the handler), and `build_initial_prompt` running once per conversation.
Source: the original's `request_handler/request_handler.py` and `simple_session_request_handler.py` docstrings,
doc/en/handle-request-finish-callback.md, and the reference's section 5.3.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi import FastAPI, Request

from chatstream import ChatPromptTogetherRedPajamaINCITEChat, ChatStream
from live_server import LiveServer, read_chat_stream, session_client
from original_style_handler import OriginalStyleSessionHandler

NUM_USERS = 20
NUM_TURNS = 3
ROLES = {
    "user": {"apis": {"allow": "all", "auth_method": "nothing", "use_session": True}},
    "admin": {"apis": {"allow": "all", "auth_method": "ui_pass_phrase", "ui_pass_phrase": "open sesame",
                       "use_session": True, "enable_dev_tool": True}},
}


class FewShotPrompt(ChatPromptTogetherRedPajamaINCITEChat):
    """Seeds one example exchange, as the original's docs suggest for `build_initial_prompt`."""

    def build_initial_prompt(self, chat_prompt: Any) -> None:
        chat_prompt.add_requester_msg("Who are you?")
        chat_prompt.add_responder_msg("An example assistant.")


@pytest.fixture
def served() -> Iterator[tuple[LiveServer, ChatStream, OriginalStyleSessionHandler, list[str]]]:
    handler = OriginalStyleSessionHandler()
    chat_stream = ChatStream(use_mock_response=True, mock_params={"type": "echo", "time_per_token_sec": 0.005},
                             chat_prompt_clazz=FewShotPrompt, request_handler=handler,
                             num_of_concurrent_executions=4, max_queue_size=NUM_USERS, client_roles=ROLES)
    finished: list[str] = []
    lock = threading.Lock()

    def on_finish(request: Request, message: str) -> None:
        with lock:
            finished.append(message)

    app = FastAPI()
    chat_stream.append_middlewares(app)
    chat_stream.append_apis(app, {"exclude": ["chat_stream"]})

    @app.post("/chat_stream")
    async def chat(request: Request) -> Any:
        body = await request.body()  # intercepted, as in the original's docs
        return await chat_stream.handle_chat_stream_request(request, body, callback=on_finish)

    with LiveServer(app) as live:
        yield live, chat_stream, handler, finished


def _prompt(client: Any) -> str:
    return urllib.parse.unquote(client.get("/get_prompt").json()["prompt"])


def test_twenty_users_three_turns_each(served) -> None:
    live, chat_stream, handler, finished = served

    def user(index: int) -> list[str]:
        with session_client(live.url) as client:
            replies = []
            for turn in range(NUM_TURNS):
                text = f"user {index} turn {turn} says hello"
                response = client.post("/chat_stream", json={"user_input": text, "regenerate": False})
                assert response.status_code == 200
                assert response.headers["x-chatstream-last-generated-message-id"]
                replies.append(read_chat_stream(response)[-1])
            prompt = _prompt(client)
            # the few-shot exchange once, then this user's own three exchanges, in order
            assert prompt.count("<human>: Who are you?") == 1
            expected = "".join(f"<human>: user {index} turn {t} says hello\n<bot>: user {index} turn {t} says hello\n"
                               for t in range(NUM_TURNS))
            assert prompt.endswith(expected), prompt
            return replies

    with ThreadPoolExecutor(NUM_USERS) as pool:
        results = list(pool.map(user, range(NUM_USERS)))
    for index, replies in enumerate(results):
        assert replies == [f"user {index} turn {t} says hello" for t in range(NUM_TURNS)]
    assert finished.count("success") == NUM_USERS * NUM_TURNS == len(finished)
    assert handler.finish_messages.count("success") == NUM_USERS * NUM_TURNS
    assert chat_stream.admission.num_running == 0 and chat_stream.admission.num_waiting == 0


def test_regenerate_and_its_error_on_an_empty_conversation(served) -> None:
    live, chat_stream, handler, finished = served
    with session_client(live.url) as client:
        first = read_chat_stream(client.post("/chat_stream", json={"user_input": "one two", "regenerate": False}))
        again = read_chat_stream(client.post("/chat_stream", json={"user_input": None, "regenerate": True}))
        assert first[-1] == again[-1] == "one two"
        assert _prompt(client).count("<human>: one two") == 1
    # The few-shot seed makes a new conversation non-empty, so an empty one needs a prompt class without it.
    chat_stream.chat_prompt_clazz = ChatPromptTogetherRedPajamaINCITEChat
    with session_client(live.url) as client:
        response = client.post("/chat_stream", json={"user_input": None, "regenerate": True})
    assert response.status_code == 500
    assert response.json() == {"error": "internal_server_error",
                               "detail": "regenerate requested even though the prompt is empty"}
    assert finished[-1] == ("unknown_error_occurred,while processing regenerate requested even though the prompt "
                            "is empty")
    assert chat_stream.admission.num_running == 0


def test_the_string_true_is_not_a_regenerate(served) -> None:
    # get_bool_from_dict: only a JSON boolean counts (the original's examples sent "True", which meant false).
    live, _, handler, _ = served
    assert handler.get_bool_from_dict({"regenerate": "True"}, "regenerate") is False
    assert handler.get_bool_from_dict({"regenerate": True}, "regenerate") is True
    assert handler.get_bool_from_dict({}, "regenerate") is False
    assert handler.get_bool_from_dict(None, "regenerate") is False


def test_a_pass_phrase_is_answered_before_the_handler(served) -> None:
    live, chat_stream, handler, finished = served
    with session_client(live.url) as client:
        response = client.post("/chat_stream", json={"user_input": "open sesame"})
        assert read_chat_stream(response)[-1] == "New role: 'admin' has been granted"
        assert response.headers["x-chatstream-api-devtool-enabled"] == "enabled"
    assert handler.finish_messages == [] and finished == []  # no slot was taken, no model was called


def test_the_injected_attributes(served) -> None:
    _, chat_stream, handler, _ = served
    assert handler.chat_generator is chat_stream.chat_generator
    assert handler.chat_prompt_clazz is FewShotPrompt
    assert handler.logger is chat_stream.logger
    assert handler.eloc.to_str({"en": "hello", "ja": "こんにちは"}) in ("hello", "こんにちは")
    assert handler.client_role_wrapper is chat_stream.client_roles
    # create_chat_prompt makes the prompt only; build_initial_prompt is the caller's (the original's sequence)
    prompt = handler.create_chat_prompt()
    assert prompt.is_empty()
    prompt.build_initial_prompt(prompt)
    assert prompt.get_turn() == 1
