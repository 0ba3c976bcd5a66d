"""The original repository's client-role tests, ported to behaviour over real HTTP: the browser default role kept in
the session, pass-phrase promotion typed into the chat (plain and SHA-256, and a wrong phrase), the agent default
role for clients that skip the session, header-phrase promotion (plain and SHA-256), unknown API names denied, and
the role table's validation.

Source: the original repository's tests/test_client_role_wrapper.py, test_client_role_verifier.py,
test_client_role_finalizer.py, test_client_role_authorizer_for_browser.py, test_client_role_authorizer_for_agent.py
and test_default_client_role_grant_middleware.py, and its example web_server_mock_dev_auto.py (the role table below
is the one those tests use; the SHA-256 digest is the repository's hash_generation_example_sha256.py's, of
"change_your_pass"). The original tested its private helper classes; this file checks what they did for a client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request

from chatstream import ChatPromptTogetherRedPajamaINCITEChat, ChatStream
from chatstream.access_control.default_client_role_grant_middleware import (
    CHAT_STREAM_CLIENT_ROLE, DefaultClientRoleGrantMiddleware)
from live_server import LiveServer, read_chat_stream, session_client

SKIP = {"X-FastSession-Skip": "skip"}
CHANGE_YOUR_PASS_SHA256 = "597d7fb99ab9ce00b59918f425031c296371e1af9848071c156be7e54916d84c"
CLIENT_ROLES: dict[str, Any] = {
    "user": {"apis": {"allow": ["chat_stream", "clear_context"], "auth_method": "nothing", "use_session": True}},
    "developer": {"apis": {"allow": ["chat_stream", "clear_context", "get_prompt", "set_generation_params"],
                           "auth_method": "ui_pass_phrase", "ui_pass_phrase": "dev mode", "use_session": True,
                           "enable_dev_tool": True}},
    "admin": {"apis": {"allow": "all", "auth_method": "ui_pass_phrase", "ui_pass_phrase": "admin mode",
                       "use_session": True}},
    "admin_sha": {"apis": {"allow": "all", "auth_method": "ui_pass_phrase_sha256",
                           "ui_pass_phrase_sha256": CHANGE_YOUR_PASS_SHA256, "use_session": True}},
    "server_default": {"apis": {"allow": ["get_load"], "auth_method": "nothing", "use_session": False}},
    "server_admin": {"apis": {"allow": "all", "auth_method": "header_phrase", "header_phrase": "i am server",
                              "use_session": False}},
    "server_admin_sha": {"apis": {"allow": "all", "auth_method": "header_phrase_sha256",
                                  "header_phrase": CHANGE_YOUR_PASS_SHA256, "use_session": False}},
}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[LiveServer, ChatStream]]:
    chat_stream = ChatStream(use_mock_response=True, mock_params={"type": "echo", "time_per_token_sec": 0},
                             chat_prompt_clazz=ChatPromptTogetherRedPajamaINCITEChat, client_roles=CLIENT_ROLES)
    app = FastAPI()
    # As the original's append_middlewares did: the grant middleware inside the session middleware.
    app.add_middleware(DefaultClientRoleGrantMiddleware, chat_stream=chat_stream)
    chat_stream.append_middlewares(app)
    chat_stream.append_apis(app, {"all": True})

    @app.get("/session_role")
    async def session_role(request: Request) -> Any:
        return {"role": request.state.session.get_session().get(CHAT_STREAM_CLIENT_ROLE)}

    with LiveServer(app) as live:
        yield live, chat_stream


def _say(client: Any, text: str) -> tuple[Any, list[str]]:
    response = client.post("/chat_stream", json={"user_input": text, "regenerate": False})
    return response, read_chat_stream(response)


def test_a_browser_gets_the_default_role_in_its_session(server) -> None:
    live, _ = server
    with session_client(live.url) as browser:
        assert browser.get("/session_role").json() == {"role": "user"}  # granted by the middleware
        assert _say(browser, "hello")[1][-1] == "hello"
        assert browser.post("/clear_context").status_code == 200
        for path in ("/get_load", "/get_prompt", "/get_resource_usage"):
            denied = browser.get(path)
            assert denied.status_code == 403
            assert denied.json() == {"success": False, "message": "Forbidden", "detail": "Denied on role layer."}


@pytest.mark.parametrize("phrase, role, dev_tool, opened", [
    ("dev mode", "developer", True, "/get_prompt"),
    ("admin mode", "admin", False, "/get_load"),
    ("change_your_pass", "admin_sha", False, "/get_resource_usage"),
])
def test_a_pass_phrase_typed_into_the_chat_promotes_the_browser(server, phrase, role, dev_tool, opened) -> None:
    live, _ = server
    with session_client(live.url) as browser:
        assert browser.get(opened).status_code == 403
        response, segments = _say(browser, phrase)
        assert segments[-1] == f"New role: '{role}' has been granted"
        assert segments[0] == "N"  # streamed a character at a time
        assert (response.headers.get("x-chatstream-api-devtool-enabled") == "enabled") is dev_tool
        assert browser.get("/session_role").json() == {"role": role}
        assert browser.get(opened).status_code == 200
        assert browser.get("/get_prompt").status_code == 200  # every promoted role here may read it
        # the phrase went neither to the model nor into the history
        assert browser.get("/get_prompt").json()["prompt"] is None


def test_a_wrong_phrase_is_just_a_message(server) -> None:
    live, _ = server
    with session_client(live.url) as browser:
        assert _say(browser, "dev mode please")[1][-1] == "dev mode please"
        assert browser.get("/session_role").json() == {"role": "user"}
        assert browser.get("/get_prompt").status_code == 403


def test_an_agent_gets_the_agent_default_role(server) -> None:
    live, _ = server
    with session_client(live.url, headers=SKIP) as agent:
        assert agent.get("/get_load").status_code == 200
        assert agent.get("/get_resource_usage").status_code == 403
        assert agent.post("/chat_stream", json={"user_input": "hi"}).status_code == 403


@pytest.mark.parametrize("phrase", ["i am server", "change_your_pass"])
def test_an_agent_header_phrase_promotes_each_request(server, phrase) -> None:
    live, _ = server
    headers = {**SKIP, "X-ChatStream-Auth-Header": phrase}
    with session_client(live.url, headers=headers) as agent:
        assert agent.get("/get_resource_usage").json()["success"] is True
        assert agent.get("/get_load").json()["chatstream_workers"][0]["name"] == "node:0"
    with session_client(live.url, headers={**SKIP, "X-ChatStream-Auth-Header": phrase + "!"}) as wrong:
        assert wrong.get("/get_resource_usage").status_code == 403


def test_an_unknown_api_name_is_denied(server) -> None:
    _, chat_stream = server
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": [], "state": {}})
    assert chat_stream.verify_role_for_api(request, "get_load1").status_code == 403


def test_the_role_table_is_validated() -> None:
    def build(roles: dict[str, Any]) -> ChatStream:
        return ChatStream(use_mock_response=True, client_roles=roles)

    user = {"apis": {"allow": ["chat_stream", "clear_context"], "auth_method": "nothing", "use_session": True}}
    assert build({"user": user}).client_role_wrapper.enabled
    with pytest.raises(ValueError):
        build({"user": {"apis": {**user["apis"], "allow": ["invalid_api_name"]}}})
    with pytest.raises(ValueError):  # no browser default role
        build({"user": {"apis": {**user["apis"], "auth_method": "ui_pass_phrase", "ui_pass_phrase": "x"}}})
    with pytest.raises(ValueError):  # two browser default roles
        build({"user": user, "user2": user})
    # An agent role besides the browser default is fine; an unknown auth_method is refused (the original kept a
    # role nobody could reach: see the README's migration notes).
    build({"user": user, "agent": {"apis": {"allow": ["chat_stream"], "auth_method": "header_phrase",
                                            "header_phrase": "k", "use_session": False}}})
    with pytest.raises(ValueError, match="auth_method"):
        build({"user": user, "agent": {"apis": {"allow": ["chat_stream"], "auth_method": "something",
                                                "use_session": False}}})
