"""The server side of the web page over real HTTP: how the page and its files are served (also
while the model loads), the UI language, and the routes the page uses besides /chat_stream:
`/get_generation_params` (every value and its range), `/set_system_prompt` and
`/get_reply_stats` (a reply's final text and the server's figures for it)."""

from __future__ import annotations

import argparse
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from chatstream import ChatPromptTogetherRedPajamaINCITEChat, ChatStream
from chatstream.http import app as app_module
from chatstream.http.app import ServerConfig
from chatstream.http.serve import add_serve_arguments, config_from_args
from chatstream.facade.session_apis import MAX_SYSTEM_PROMPT_CHARS
from live_server import OPEN_ROLES, LiveServer, read_chat_stream, session_client

MESSAGE_ID = "X-ChatStream-Last-Generated-Message-Id"


def _chat_stream(**options: Any) -> ChatStream:
    return ChatStream(use_mock_response=True, chat_prompt_clazz=ChatPromptTogetherRedPajamaINCITEChat,
                      mock_params={"type": "echo", "time_per_token_sec": 0.01}, client_roles=OPEN_ROLES, **options)


def _app(chat_stream: ChatStream, **opts: Any) -> FastAPI:
    app = FastAPI()
    chat_stream.append_middlewares(app)
    chat_stream.append_apis(app, {"all": True, **opts})
    return app


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[LiveServer, ChatStream]]:
    chat_stream = _chat_stream(temperature=0.7, top_k=None, max_new_tokens=128)
    ui = {"welcomeMessage": "Hi </script><script>alert(1)</script>", "title": "Test"}
    with LiveServer(_app(chat_stream, web_ui_params=ui, locale="ja_JP")) as live:
        yield live, chat_stream


def _config(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="cs-config">(.*?)</script>', html, re.S)
    assert match, "the page must carry its configuration"
    return json.loads(match.group(1))


def test_the_page_carries_its_configuration_as_data(server) -> None:
    live, _ = server
    response = httpx.get(live.url + "/")
    assert response.status_code == 200 and response.headers["content-type"] == "text/html; charset=utf-8"
    config = _config(response.text)
    assert config == {"options": {"welcomeMessage": "Hi </script><script>alert(1)</script>", "title": "Test"},
                      "locale": "ja", "loading": False}
    assert response.text.count("<script") == 2  # the data island and the entry module, nothing injected


@pytest.mark.parametrize(("path", "media_type"), [
    ("/chatstream.js", "text/javascript"), ("/webui/app.js", "text/javascript"),
    ("/webui/chatstream.css", "text/css"), ("/webui/vendor/dompurify/purify.es.mjs", "text/javascript"),
    ("/webui/vendor/markdown-it/markdown-it.esm.min.mjs", "text/javascript"),
    ("/webui/vendor/highlight.js/highlight.min.js", "text/javascript"),
    ("/webui/vendor/highlight.js/a11y-dark.min.css", "text/css"),
])
def test_the_page_files_are_served(server, path: str, media_type: str) -> None:
    live, _ = server
    response = httpx.get(live.url + path)
    assert response.status_code == 200 and response.headers["content-type"].startswith(media_type)
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/webui/page.py", "/webui/index.html", "/webui/vendor/markdown-it/LICENSE",
                                  "/webui/../session_apis.py", "/webui/%2e%2e/page.py", "/webui/nothing.js"])
def test_nothing_else_is_served(server, path: str) -> None:
    live, _ = server
    response = httpx.get(live.url + path)
    assert response.status_code == 404


def test_the_locale_option_is_checked() -> None:
    with pytest.raises(ValueError, match="unsupported UI locale 'de'"):
        _app(_chat_stream(), locale="de")
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    assert config_from_args(parser.parse_args(["--locale", "ja"])).locale == "ja"
    assert config_from_args(parser.parse_args([])).locale is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--locale", "de"])


def test_generation_params_show_every_value_in_effect_and_its_range(server) -> None:
    live, _ = server
    with session_client(live.url) as client:
        body = client.get("/get_generation_params").json()
        assert body["generation_params"] == {
            "temperature": 0.7, "top_k_value": 0, "top_p_value": 1.0, "max_new_tokens": 128,
            "repetition_penalty": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0}
        assert body["ranges"]["temperature"] == {"min": 0.0, "max": 2.0, "integer": False, "min_exclusive": False}
        assert body["ranges"]["top_p_value"] == {"min": 1e-9, "max": 1.0, "integer": False, "min_exclusive": False}
        assert body["ranges"]["max_new_tokens"]["integer"] is True
        assert set(body["ranges"]) == set(body["generation_params"])


def test_the_system_prompt_is_the_conversations_system_text(server) -> None:
    live, _ = server
    with session_client(live.url) as client:
        assert client.post("/set_system_prompt", json={"system_prompt": "Be brief."}).json() == {
            "success": True, "message": "success", "system_prompt": "Be brief."}
        read_chat_stream(client.post("/chat_stream", json={"user_input": "Hi"}))
        assert client.get("/get_prompt").json()["prompt"].startswith("Be%20brief.")
        # Blank: back to the preset's own system text (empty for this preset).
        assert client.post("/set_system_prompt", json={"system_prompt": "  "}).json()["system_prompt"] == ""
        for body in ({"system_prompt": 3}, {}, [], {"system_prompt": "x" * (MAX_SYSTEM_PROMPT_CHARS + 1)}):
            response = client.post("/set_system_prompt", json=body)
            assert response.status_code == 400 and response.json()["field"] == "system_prompt"
        # A new conversation (clear_context) starts without it; the page sends it again.
        client.post("/clear_context")
        assert client.post("/set_system_prompt", json={"system_prompt": "Be kind."}).status_code == 200
        assert client.get("/get_prompt").json()["prompt"] == "Be%20kind."


def test_reply_stats_are_the_servers_and_only_for_the_own_session(server) -> None:
    live, chat_stream = server
    with session_client(live.url) as client, session_client(live.url) as other:
        response = client.post("/chat_stream", json={"user_input": "one two three"})
        message_id = response.headers[MESSAGE_ID]
        assert read_chat_stream(response)[-1] == "one two three"
        body = client.get("/get_reply_stats", params={"message_id": message_id}).json()
        assert body["success"] is True and body["finished"] is True and body["text"] == "one two three"
        stats = body["stats"]
        assert stats["num_output_tokens"] == 3 and stats["finish_reason"] == "stop"
        assert stats["time_to_first_token_sec"] > 0 and stats["tokens_per_sec"] > 0
        record = chat_stream.chat_generator.replies.find(message_id)
        assert stats["decode_sec"] == round(record.decode_sec, 4)

        assert other.get("/get_reply_stats", params={"message_id": message_id}).status_code == 404
        unknown = client.get("/get_reply_stats", params={"message_id": "0f8fad5b-d9cb-469f-a165-70867728950e"})
        assert unknown.status_code == 404 and unknown.json()["field"] == "message_id"
        malformed = client.get("/get_reply_stats", params={"message_id": "nope"})
        assert malformed.status_code == 400 and malformed.json()["field"] == "message_id"
        missing = client.get("/get_reply_stats")
        assert missing.status_code == 400 and missing.json()["field"] == "message_id"


def test_a_reply_still_streaming_is_not_finished_and_a_stopped_one_keeps_its_text() -> None:
    chat_stream = ChatStream(use_mock_response=True, chat_prompt_clazz=ChatPromptTogetherRedPajamaINCITEChat,
                             mock_params={"type": "echo", "time_per_token_sec": 0.05}, client_roles=OPEN_ROLES)
    with LiveServer(_app(chat_stream)) as live, session_client(live.url) as client:
        words = " ".join(f"w{i}" for i in range(200))
        with client.stream("POST", "/chat_stream", json={"user_input": words}) as response:
            message_id = response.headers[MESSAGE_ID]
            chunks = response.iter_text()
            next(chunks)
            with session_client(live.url) as probe:  # another session learns nothing, not even that it exists
                assert probe.get("/get_reply_stats", params={"message_id": message_id}).status_code == 404
            assert client.get("/get_reply_stats", params={"message_id": message_id}).json() == {
                "success": True, "message": "success", "message_id": message_id, "finished": False}
        # The client left: the server keeps what it generated, and says exactly what.
        for _ in range(200):
            body = client.get("/get_reply_stats", params={"message_id": message_id}).json()
            if body.get("finished"):
                break
            threading.Event().wait(0.05)
        assert body["finished"] is True and body["stats"]["finish_reason"] == "abort"
        assert words.startswith(body["text"]) and 0 < body["stats"]["num_output_tokens"] < 200
        prompt = urllib.parse.unquote(client.get("/get_prompt").json()["prompt"])
        assert prompt.endswith(f"<bot>: {body['text']}\n")


def test_while_the_model_loads_the_page_is_served_and_the_apis_say_503(monkeypatch) -> None:
    gate = threading.Event()
    build = app_module.build_chat_stream
    monkeypatch.setattr(app_module, "build_chat_stream", lambda config, *rest: (gate.wait(60), build(config, *rest))[1])
    app = app_module.create_app(ServerConfig(
        chat_prompt=ChatPromptTogetherRedPajamaINCITEChat, locale="en",
        chat_stream_options={"use_mock_response": True}))
    with LiveServer(app) as live:
        try:
            page = httpx.get(live.url + "/")
            assert page.status_code == 200
            assert _config(page.text)["loading"] is True and _config(page.text)["locale"] == "en"
            assert httpx.get(live.url + "/webui/app.js").status_code == 200
            assert httpx.get(live.url + "/get_generation_params").status_code == 503
            assert httpx.get(live.url + "/health").json()["status"] == "loading"
        finally:
            gate.set()
        for _ in range(200):
            if httpx.get(live.url + "/health").status_code == 200:
                break
            threading.Event().wait(0.05)
        assert _config(httpx.get(live.url + "/").text)["loading"] is False
