"""/openapi.json for `chatstream serve`: every route, with the request bodies it takes.

The routes are plain Starlette routes (the default APIs must work in Starlette apps too, and the
/v1 routes parse their bodies themselves to answer in OpenAI's error shape), so FastAPI's own
generator lists none of them. `install_openapi(app)` replaces `app.openapi` with a generator
that walks `app.routes`: routes it knows get their request schema (the /v1 request models' own
JSON schema, the default APIs' documented bodies), any other plain route (added by an embedding
app or a later feature) still appears with its methods and path parameters. The document is
built on first use, after every route was added, and cached.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import Route

from chatstream.facade.generation_params import SESSION_PARAM_RANGES
from chatstream.facade.session_apis import MAX_SYSTEM_PROMPT_CHARS
from chatstream.http.openai.responses_api import ResponsesRequest
from chatstream.http.openai.side_routes import DetokenizeRequest, TokenizeRequest
from chatstream.http.openai_protocol import ChatCompletionRequest, CompletionRequest

JsonSchema = dict[str, Any]

_ERROR = {"description": "an error, as JSON naming the problem", "content": {"application/json": {"schema": {}}}}
_JSON_OK = {"description": "JSON", "content": {"application/json": {"schema": {"type": "object"}}}}


def _object(properties: JsonSchema, required: tuple[str, ...] = ()) -> JsonSchema:
    schema: JsonSchema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _session_params_schema() -> JsonSchema:
    properties = {}
    for name, bounds in SESSION_PARAM_RANGES.items():
        prop: JsonSchema = {"type": "integer" if bounds.integer else "number", "maximum": bounds.high}
        prop["exclusiveMinimum" if bounds.low_open else "minimum"] = bounds.low
        properties[name] = {"anyOf": [prop, {"type": "null"}]}
    return _object(properties)


# Route name -> (summary, request body schema or None, query parameters)
_KNOWN: dict[str, tuple[str, JsonSchema | type[BaseModel] | None, tuple[str, ...]]] = {
    "health": ("Serving status: 200 ready; 503 loading, failed, dead or draining, with the reason", None, ()),
    "metrics": ("Prometheus metrics", None, ()),
    "openai_chat_completions": ("OpenAI-compatible chat completion (streamed with stream: true)",
                                ChatCompletionRequest, ()),
    "openai_completions": ("OpenAI-compatible text completion", CompletionRequest, ()),
    "openai_models": ("The served model", None, ()),
    "openai_model": ("One served model by its id", None, ()),
    "openai_responses": ("OpenAI-compatible Responses API (streamed with stream: true)", ResponsesRequest, ()),
    "openai_response": ("A stored response", None, ()),
    "openai_response_delete": ("Delete a stored response", None, ()),
    "tokenize": ("Token ids of a prompt or of chat messages (vLLM's)", TokenizeRequest, ()),
    "detokenize": ("Text of token ids (vLLM's)", DetokenizeRequest, ()),
    "version": ("The server's version", None, ()),
    "chat_stream": ("The original ChatStream API: the reply streamed as cumulative text + <::EOS::>",
                    _object({"user_input": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                             "regenerate": {"type": "boolean"}}), ()),
    "clear_context": ("Forget this session's conversation", _object({}), ()),
    "get_prompt": ("This session's prompt as the model sees it", None, ()),
    "set_generation_params": ("Override sampling parameters for this session", _session_params_schema(), ()),
    "get_generation_params": ("This session's sampling parameters and their ranges", None, ()),
    "set_feedback": ("Like or dislike a reply", _object({
        "message_id": {"type": "string"}, "is_like": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
        "form_data": {}}, ("message_id",)), ()),
    "get_load": ("Running and waiting generations", None, ()),
    "get_resource_usage": ("Memory in use", None, ()),
    "set_system_prompt": ("This session's system text", _object(
        {"system_prompt": {"type": "string", "maxLength": MAX_SYSTEM_PROMPT_CHARS}}, ("system_prompt",)), ()),
    "get_reply_stats": ("A finished reply's text, token counts and timing", None, ("message_id",)),
    "webui_index": ("The web chat page", None, ()),
    "webui_js": ("The web page's entry module", None, ()),
    "webui_js_files": ("The web page's other files", None, ()),
}
_DOCS_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and so /openapi.json and /docs) describe every route of `app`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document of its own API routes (the conversation routes, in included routers too),
    with every plain route added and the routes of `_KNOWN` described by their request bodies."""
    document = get_openapi(title=app.title, version=app.version, routes=app.routes)
    paths: dict[str, dict[str, Any]] = document.setdefault("paths", {})
    components: dict[str, JsonSchema] = document.get("components", {}).get("schemas", {})
    for route in app.routes:
        if not isinstance(route, Route) or route.path in _DOCS_PATHS or not route.include_in_schema:
            continue
        if isinstance(route, APIRoute) and route.name not in _KNOWN:
            continue  # FastAPI described it from its own declaration
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path)
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            paths.setdefault(path, {})[method.lower()] = _operation(route, path, method, components)
    if components:
        document.setdefault("components", {})["schemas"] = components
    return document


def _operation(route: Route, path: str, method: str, components: dict[str, JsonSchema]) -> dict[str, Any]:
    summary, body, query = _KNOWN.get(route.name, (route.name.replace("_", " "), None, ()))
    operation: dict[str, Any] = {"operationId": f"{route.name}_{method.lower()}", "summary": summary,
                                 "responses": {"200": _JSON_OK, "4XX": _ERROR, "503": _ERROR}}
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in re.findall(r"\{(\w+)\}", path)]
    parameters += [{"name": name, "in": "query", "required": False, "schema": {"type": "string"}} for name in query]
    if parameters:
        operation["parameters"] = parameters
    if method in ("POST", "PUT", "PATCH"):
        schema = _model_schema(body, components) if isinstance(body, type) else (body or {"type": "object"})
        operation["requestBody"] = {"required": route.name not in ("clear_context",),
                                    "content": {"application/json": {"schema": schema}}}
    return operation


def _model_schema(model: type[BaseModel], components: dict[str, JsonSchema]) -> JsonSchema:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}
