"""The default APIs' one role check: every handler answers the role layer's 403 to a caller whose
role does not allow it, before doing anything, and runs for a caller whose role does."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from chatstream import ChatPromptTogetherRedPajamaINCITEChat, ChatStream
from chatstream.facade.client_roles import AUTH_HEADER

FORBIDDEN = {"success": False, "message": "Forbidden", "detail": "Denied on role layer."}
SKIP = {"X-FastSession-Skip": "skip"}  # an agent: no session, its role comes from a header
# Every default API but /chat_stream, the web page and its script: their handlers carry the decorator.
HANDLERS = {"clear_context": "POST", "get_prompt": "GET", "set_generation_params": "POST",
            "get_generation_params": "GET", "set_feedback": "POST", "get_load": "GET",
            "get_resource_usage": "GET"}


def _app(allowed: list[str]) -> TestClient:
    roles = {"browser": {"apis": {"allow": [], "auth_method": "nothing", "use_session": True}},
             "agent": {"apis": {"allow": allowed, "auth_method": "header_phrase", "header_phrase": "key",
                                "use_session": False}}}
    chat_stream = ChatStream(use_mock_response=True, chat_prompt_clazz=ChatPromptTogetherRedPajamaINCITEChat,
                             client_roles=roles)
    app = FastAPI()
    chat_stream.append_middlewares(app)
    chat_stream.append_apis(app, {"all": True})
    return TestClient(app)


@pytest.mark.parametrize("api", sorted(HANDLERS))
def test_a_role_without_the_api_gets_403_and_nothing_runs(api: str) -> None:
    client = _app([name for name in HANDLERS if name != api])
    response = client.request(HANDLERS[api], "/" + api, headers={**SKIP, AUTH_HEADER: "key"},
                              json={"temperature": 0.5})
    assert response.status_code == 403 and response.json() == FORBIDDEN
    # No role at all is denied just the same.
    assert client.request(HANDLERS[api], "/" + api, headers=SKIP, json={}).status_code == 403


@pytest.mark.parametrize("api", sorted(HANDLERS))
def test_a_role_with_the_api_reaches_its_handler(api: str) -> None:
    client = _app([api])
    response = client.request(HANDLERS[api], "/" + api, headers={**SKIP, AUTH_HEADER: "key"}, json={})
    # The handler ran: it answers in the original's shape (an agent has no session, so some refuse).
    assert response.status_code != 403 and "success" in response.json()
