"""Tests for chatstream.facade.client_roles: role validation, browser sessions, agent headers."""

import hashlib
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastsession import FastSessionMiddleware, MemoryStore
from starlette.testclient import TestClient

from chatstream.facade.client_roles import (
    API_NAMES,
    AUTH_HEADER,
    DENIED_BY_DEFAULT,
    SESSION_ROLE_KEY,
    ClientRoles,
    promotion_stream_text,
)

SKIP = {"X-FastSession-Skip": "skip"}
FORBIDDEN = {"success": False, "message": "Forbidden", "detail": "Denied on role layer."}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def role(allow: Any, auth_method: str = "nothing", **extra: Any) -> dict[str, Any]:
    return {"apis": {"allow": allow, "auth_method": auth_method, **extra}}


ROLES: dict[str, Any] = {
    "user": role(["chat_stream", "clear_context"], use_session=True),
    "developer": role("all", "ui_pass_phrase", ui_pass_phrase="open sesame", use_session=True, enable_dev_tool=True),
    "reviewer": role(["get_prompt"], "ui_pass_phrase_sha256", ui_pass_phrase_sha256=sha("合言葉"), use_session=True),
    "monitor": role(["get_load"], "header_phrase", header_phrase="Bearer monitor-key", use_session=False),
    "ops": role(["get_resource_usage"], "header_phrase_sha256", header_phrase=sha("ops-key"), use_session=False),
    "bot": role(["chat_stream"], use_session=False),
}


def make_app(roles: ClientRoles, with_session: bool = True) -> FastAPI:
    app = FastAPI()

    # Root-level paths only: fastsession's cookie has no Path attribute, so it is scoped to the
    # directory of the request that created it.
    @app.api_route("/api", methods=["GET", "POST"])
    async def call(name: str, request: Request) -> Any:
        denied = roles.verify(request, name)
        if denied is not None:
            return denied
        return {"success": True, "role": roles.role_for(request), "dev_tool": roles.dev_tool_enabled(request)}

    @app.post("/chat")
    async def chat(request: Request) -> Any:
        granted = roles.try_promote(request, (await request.json())["user_input"])
        return {"granted": granted, "text": promotion_stream_text(granted) if granted else None}

    @app.get("/session")
    async def session(request: Request) -> Any:
        return dict(request.state.session.get_session())

    if with_session:
        app.add_middleware(
            FastSessionMiddleware,
            secret_key="x",
            store=MemoryStore(),
            http_only=True,
            secure=False,
            skip_session_header={"header_name": "X-FastSession-Skip", "header_value": "skip"},
        )
    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(make_app(ClientRoles(ROLES)))


def status(client: TestClient, api: str, headers: dict[str, str] | None = None) -> int:
    return client.get("/api", params={"name": api}, headers=headers).status_code


def promote(client: TestClient, text: str, headers: dict[str, str] | None = None) -> Any:
    return client.post("/chat", json={"user_input": text}, headers=headers).json()


# --- no role table: the default policy ----------------------------------------------------------


@pytest.mark.parametrize("with_session", [True, False])
def test_no_roles_opens_everything_but_the_servers_prompts_load_and_memory(with_session: bool) -> None:
    roles = ClientRoles(None)
    assert not roles.enabled
    client = TestClient(make_app(roles, with_session=with_session))
    assert DENIED_BY_DEFAULT == ("get_prompt", "get_load", "get_resource_usage")
    for api in API_NAMES:
        expected = 403 if api in DENIED_BY_DEFAULT else 200
        assert status(client, api) == expected, api
        assert status(client, api, SKIP) == expected, api
    assert status(client, "no_such_api") == 403
    assert client.get("/api?name=chat_stream").json() == {"success": True, "role": None, "dev_tool": False}
    assert promote(client, "open sesame")["granted"] is None


def test_api_names() -> None:
    assert API_NAMES == (
        "chat_stream", "clear_context", "get_prompt", "set_generation_params", "get_generation_params",
        "set_feedback", "get_load", "get_resource_usage", "webui_index", "webui_js",
        "set_system_prompt", "get_reply_stats", "conversations",
    )


# --- browser clients -----------------------------------------------------------------------


def test_default_browser_role(client: TestClient) -> None:
    assert ClientRoles(ROLES).enabled
    assert client.get("/api?name=chat_stream").json() == {"success": True, "role": "user", "dev_tool": False}
    assert status(client, "clear_context") == 200
    response = client.get("/api?name=get_load")
    assert response.status_code == 403
    assert response.json() == FORBIDDEN
    assert status(client, "webui_index") == 403
    assert client.get("/session").json()[SESSION_ROLE_KEY] == "user"


def test_unknown_api_denied_even_for_all(client: TestClient) -> None:
    assert promote(client, "open sesame")["granted"] == "developer"
    assert status(client, "get_load") == 200
    assert status(client, "web_ui_js") == 403
    assert client.get("/api?name=no_such_api").json() == FORBIDDEN


def test_plain_pass_phrase_promotion(client: TestClient) -> None:
    assert status(client, "get_resource_usage") == 403
    assert promote(client, "wrong phrase") == {"granted": None, "text": None}
    assert status(client, "get_resource_usage") == 403

    reply = promote(client, "open sesame")
    assert reply == {"granted": "developer", "text": "New role: 'developer' has been granted"}
    for api in API_NAMES:
        assert status(client, api) == 200
    assert client.get("/api?name=chat_stream").json() == {"success": True, "role": "developer", "dev_tool": True}
    assert client.get("/session").json()[SESSION_ROLE_KEY] == "developer"

    other = TestClient(client.app)  # a new browser keeps the default role
    assert status(other, "get_resource_usage") == 403


def test_sha256_pass_phrase_promotion(client: TestClient) -> None:
    assert status(client, "get_prompt") == 403
    assert promote(client, sha("合言葉"))["granted"] is None  # the digest itself is not the phrase
    assert promote(client, "合言葉")["granted"] == "reviewer"
    assert status(client, "get_prompt") == 200
    assert status(client, "chat_stream") == 403  # the new role replaces the old one


def test_header_phrase_ignored_for_browsers(client: TestClient) -> None:
    assert status(client, "get_load", {AUTH_HEADER: "Bearer monitor-key"}) == 403
    assert promote(client, "Bearer monitor-key")["granted"] is None


def test_promotion_saves_session() -> None:
    saved: list[bool] = []

    class Session:
        def __init__(self) -> None:
            self.data: dict[str, Any] = {}

        def get_session(self) -> dict[str, Any]:
            return self.data

        def save_session(self) -> None:
            saved.append(True)

    roles = ClientRoles(ROLES)
    request = Request({"type": "http", "method": "POST", "path": "/", "headers": [], "state": {"session": Session()}})
    assert roles.try_promote(request, "open sesame") == "developer"
    assert request.state.session.data[SESSION_ROLE_KEY] == "developer"
    assert saved
    assert roles.role_for(request) == "developer"


def test_stale_session_role_falls_back_to_default() -> None:
    roles = ClientRoles(ROLES)
    session = {SESSION_ROLE_KEY: "monitor"}  # an agent role can't be a browser's
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": [], "state": {"session": session}})
    assert roles.role_for(request) == "user"
    assert session[SESSION_ROLE_KEY] == "user"


# --- agents --------------------------------------------------------------------------------


def test_agent_default_role(client: TestClient) -> None:
    response = client.get("/api?name=chat_stream", headers=SKIP)
    assert response.json() == {"success": True, "role": "bot", "dev_tool": False}
    assert "set-cookie" not in response.headers
    assert status(client, "clear_context", SKIP) == 403
    assert promote(client, "open sesame", SKIP)["granted"] is None
    assert status(client, "get_load", SKIP) == 403


def test_agent_plain_header(client: TestClient) -> None:
    headers = {**SKIP, AUTH_HEADER: "Bearer monitor-key"}
    assert client.get("/api?name=get_load", headers=headers).json()["role"] == "monitor"
    assert status(client, "chat_stream", headers) == 403
    assert status(client, "get_load", {**SKIP, AUTH_HEADER: "Bearer wrong"}) == 403
    assert status(client, "get_load", {**SKIP, AUTH_HEADER: "Bearer monitor-key "}) == 403


def test_agent_sha256_header(client: TestClient) -> None:
    assert status(client, "get_resource_usage", {**SKIP, AUTH_HEADER: "ops-key"}) == 200
    assert status(client, "get_resource_usage", {**SKIP, AUTH_HEADER: sha("ops-key")}) == 403
    upper_hex = sha("ops-key").upper()
    alias = dict(ROLES, ops=role(["get_resource_usage"], "header_phrase_sha256", header_phrase_sha256=upper_hex))
    other = TestClient(make_app(ClientRoles(alias)))
    assert status(other, "get_resource_usage", {**SKIP, AUTH_HEADER: "ops-key"}) == 200


def test_agent_without_default_role_denied() -> None:
    roles = {name: spec for name, spec in ROLES.items() if name != "bot"}
    client = TestClient(make_app(ClientRoles(roles)))
    response = client.get("/api?name=chat_stream", headers=SKIP)
    assert response.status_code == 403
    assert response.json() == FORBIDDEN
    assert status(client, "get_load", {**SKIP, AUTH_HEADER: "Bearer monitor-key"}) == 200
    assert status(client, "chat_stream") == 200  # browsers are unaffected


def test_roles_without_session_middleware_deny_instead_of_crash() -> None:
    client = TestClient(make_app(ClientRoles({"user": ROLES["user"]}), with_session=False))
    assert client.get("/api?name=chat_stream").json() == FORBIDDEN


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("roles", "error", "message"),
    [
        ({"bot": ROLES["bot"]}, ValueError, "exactly one browser default role"),
        ({}, ValueError, "exactly one browser default role"),
        ({"a": ROLES["user"], "b": ROLES["user"]}, ValueError, "found 'a', 'b'"),
        ({"user": ROLES["user"], "b1": ROLES["bot"], "b2": ROLES["bot"]}, ValueError, "at most one agent default"),
        ({"user": role(["chat_stream", "web_ui_js"], use_session=True)}, ValueError, "unknown API name 'web_ui_js'"),
        ({"user": role("chat_stream", use_session=True)}, ValueError, "allow must be"),
        ({"user": role(None, use_session=True)}, TypeError, "allow must be"),
        ({"user": role(42, use_session=True)}, TypeError, "allow must be"),
        ({"user": role([1], use_session=True)}, TypeError, "must be strings"),
        ({"user": {"apis": {"auth_method": "nothing", "use_session": True}}}, ValueError, "'allow' is required"),
        ({"user": ROLES["user"], "dev": role("all", "ui_pass_phrase")}, ValueError, "key 'ui_pass_phrase'"),
        ({"user": ROLES["user"], "dev": role("all", "ui_pass_phrase_sha256")}, ValueError, "requires the key"),
        ({"user": ROLES["user"], "m": role("all", "header_phrase")}, ValueError, "requires the key 'header_phrase'"),
        ({"user": ROLES["user"], "m": role("all", "header_phrase_sha256", header_phrase="abc")}, ValueError, "64-char"),
        ({"user": ROLES["user"], "m": role("all", "header_phrase", header_phrase="")}, TypeError, "non-empty string"),
        ({"user": ROLES["user"], "m": role("all", "password", password="x")}, ValueError, "unknown auth_method"),
        (
            {"user": ROLES["user"], "m": role("all", "header_phrase", header_phrase="k", use_session=True)},
            ValueError,
            "use_session=False",
        ),
        ({"user": role("all")}, ValueError, "requires use_session"),
        ({"user": role("all", use_session="yes")}, TypeError, "use_session must be a bool"),
        ({"user": role("all", use_session=True, enable_dev_tool=1)}, TypeError, "enable_dev_tool"),
        ({"user": {"allow": "all"}}, TypeError, "expected {'apis'"),
        ([("user", ROLES["user"])], TypeError, "client_roles must be a dict"),
    ],
)
def test_validation_errors(roles: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace("{", r"\{")):
        ClientRoles(roles)


def test_valid_table() -> None:
    roles = ClientRoles(ROLES)
    assert set(roles.roles) == set(ROLES)
    assert roles.roles["developer"].allowed_apis is None
    assert roles.roles["ops"].secret == sha("ops-key")
