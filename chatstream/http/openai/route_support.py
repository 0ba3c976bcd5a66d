"""What every /v1 route does around its serving call: the key, the body, and errors in OpenAI's shape.

Owns only HTTP: the bearer-key check, parsing a JSON body into a request model (a
`ValidationError` becomes a 400 naming the field, here, so no app-wide handler changes; an unknown
top-level field is OpenAI's "Unrecognized request argument supplied"), and `error_response`.
`openai_http_errors` answers Starlette's own 404 and 405 under /v1 in OpenAI's shape too.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chatstream.facade.json_body import JsonBodyError, parse_json
from chatstream.http.auth import AUTHENTICATED_SCOPE_KEY, key_matches
from chatstream.http.openai.wire import OpenAIError
from chatstream.http.server_state import ServerState, server_state

M = TypeVar("M", bound=BaseModel)
_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def check_key(request: Request, state: ServerState) -> None:
    """The key check for apps that mount these routes without `ApiKeyAuth` (which guards every
    route of `chatstream serve` and marks the requests it let through)."""
    if not state.api_key or request.scope.get(AUTHENTICATED_SCOPE_KEY):
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise OpenAIError(401, "You didn't provide an API key: send it as `Authorization: Bearer <key>`",
                          code="invalid_api_key")
    if not key_matches(token.strip(), state.api_key):  # constant time
        raise OpenAIError(401, "Incorrect API key provided", code="invalid_api_key")


async def parse_body(request: Request, model: type[M]) -> M:
    """The body as `model`; a big body is parsed and checked on the tokenizing pool, off the event loop."""
    body = await request.body()
    serving = server_state(request).serving
    offload = serving.offload if serving is not None else None
    try:
        data = parse_json(body) if offload is None else await offload.run(len(body), parse_json, body)
    except JsonBodyError as exc:
        raise OpenAIError(400, str(exc), param=exc.field) from None
    if not isinstance(data, dict):
        raise OpenAIError(400, "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from exc


def validation_error(exc: ValidationError) -> OpenAIError:
    """A pydantic error as a 400 naming the first offending field (e.g. "messages.0.role")."""
    first = exc.errors()[0]
    param = ".".join(str(part) for part in first["loc"] if not _is_type_tag(part)) or None
    if first["type"] == "extra_forbidden":
        return OpenAIError(400, f"Unrecognized request argument supplied: {param}", param=param)
    return OpenAIError(400, f"{param}: {first['msg']}" if param else first["msg"], param=param)


def _is_type_tag(part: int | str) -> bool:
    # Union members add their type to an error's location ("str", "list[int]", "TextPart");
    # the client only knows its own field names (lower case) and list indices.
    return isinstance(part, str) and (not part.isidentifier() or part[:1].isupper() or part in _TYPE_NAMES
                                      or part.startswith(("literal[", "function-")))


def error_response(exc: OpenAIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def openai_http_errors(request: Request, exc: Exception) -> Response:
    """Starlette's HTTP errors (no such route: 404, wrong method: 405): OpenAI's shape under /v1,
    FastAPI's `{"detail": ...}` elsewhere."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if request.url.path.startswith("/v1/") or request.url.path == "/v1":
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = {404: f"Unknown request URL: {request.method} {request.url.path}",
                   405: f"Method {request.method} is not allowed for {request.url.path}"}.get(
            exc.status_code, str(exc.detail))
        return error_response(OpenAIError(exc.status_code, message, code=kind, headers=headers))
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
