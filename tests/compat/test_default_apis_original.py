"""The original repository's tests of the default APIs' registration, ported: `append_apis` with "include",
"exclude" and "all" on a `ChatStream()` built with no model, the routes being FastAPI API routes (so they are in
/openapi.json), one selector only; `DefaultApiNames` and `to_web_api_path`.

Source: the original repository's tests/test_chat_stream_api_appender.py, tests/test_default_api_names.py and
tests/test_default_api_names_to_path.py (written again here). This package adds two APIs of its own
(`set_system_prompt`, `get_reply_stats`); the original's ten keep their names, methods and paths.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from chatstream import ChatStream
from chatstream.chat_stream_api_appender import append_apis
from chatstream.default_api_names import DefaultApiNames
from chatstream.default_api_names_to_path import to_web_api_path

ORIGINAL_PATHS = {
    DefaultApiNames.CHAT_STREAM: "/chat_stream",
    DefaultApiNames.CLEAR_CONTEXT: "/clear_context",
    DefaultApiNames.GET_PROMPT: "/get_prompt",
    DefaultApiNames.SET_GENERATION_PARAMS: "/set_generation_params",
    DefaultApiNames.GET_GENERATION_PARAMS: "/get_generation_params",
    DefaultApiNames.SET_FEEDBACK: "/set_feedback",
    DefaultApiNames.GET_LOAD: "/get_load",
    DefaultApiNames.GET_RESOURCE_USAGE: "/get_resource_usage",
    DefaultApiNames.WEBUI_INDEX: "/",
    DefaultApiNames.WEBUI_JS: "/chatstream.js",
}


def _api_paths(app: FastAPI) -> set[str]:
    return {route.path for route in app.routes if isinstance(route, APIRoute)}


def test_include_adds_only_the_named_api() -> None:
    app = FastAPI()
    append_apis(ChatStream(), app, {"include": [DefaultApiNames.GET_PROMPT]}, None, None)
    assert _api_paths(app) == {"/get_prompt"}


def test_exclude_adds_every_other_api() -> None:
    app = FastAPI()
    excluded = [DefaultApiNames.GET_PROMPT, DefaultApiNames.CLEAR_CONTEXT]
    append_apis(ChatStream(), app, {"exclude": excluded}, None, None)
    paths = _api_paths(app)
    for name in DefaultApiNames.API_NAMES:
        assert (to_web_api_path(name) in paths) == (name not in excluded), name


def test_all_adds_every_api_and_they_are_in_openapi() -> None:
    app = FastAPI()
    append_apis(ChatStream(), app, {"all": True}, None, None)
    assert {to_web_api_path(name) for name in DefaultApiNames.API_NAMES} <= _api_paths(app)
    assert set(ORIGINAL_PATHS.values()) <= set(app.openapi()["paths"])


def test_two_selectors_are_an_error() -> None:
    with pytest.raises(ValueError):
        append_apis(ChatStream(), FastAPI(), {"all": True, "include": [DefaultApiNames.GET_PROMPT]}, None, None)


def test_every_api_has_a_method() -> None:
    for name in DefaultApiNames.API_NAMES:
        assert DefaultApiNames.API_METHODS[name] in ("GET", "POST"), name
    assert DefaultApiNames.API_METHODS[DefaultApiNames.CHAT_STREAM] == "POST"
    assert DefaultApiNames.API_METHODS[DefaultApiNames.GET_LOAD] == "GET"


def test_api_names_to_paths() -> None:
    for name, path in ORIGINAL_PATHS.items():
        assert to_web_api_path(name) == path
    with pytest.raises(Exception, match="Unknown API name"):
        to_web_api_path("unknown_api")
