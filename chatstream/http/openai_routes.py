"""The OpenAI-compatible routes: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`.

This module owns only HTTP: the bearer-key check, the readiness check, parsing the body into the
request models (a `ValidationError` becomes a 400 naming the field, here, so no app-wide exception
handler changes), and turning what `OpenAIServing` returns into a response: a dict becomes JSON,
an `SSEStream` an event stream, an `OpenAIError` an error in OpenAI's shape.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chatstream.facade.chat_stream_response import ChatStreamResponse
from chatstream.facade.disconnect import ClientGone, disconnect_watch
from chatstream.facade.json_body import JsonBodyError, parse_json
from chatstream.facade.offload import Offload
from chatstream.http.auth import AUTHENTICATED_SCOPE_KEY, key_matches
from chatstream.http.openai_protocol import ChatCompletionRequest, CompletionRequest, OpenAIError, model_list, sse
from chatstream.http.openai_serving import SSEStream
from chatstream.http.server_state import ServerState, server_state

# No proxy buffering, no caching: each event must reach the client as soon as it is written.
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}
_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def add_openai_routes(app: Starlette) -> None:
    """Register the /v1 routes on a FastAPI or Starlette app whose `app.state.server` is a `ServerState`."""
    app.router.add_route("/v1/chat/completions", chat_completions, methods=["POST"], name="openai_chat_completions")
    app.router.add_route("/v1/completions", completions, methods=["POST"], name="openai_completions")
    app.router.add_route("/v1/models", models, methods=["GET"], name="openai_models")


async def chat_completions(request: Request) -> Response:
    return await _handle(request, ChatCompletionRequest)


async def completions(request: Request) -> Response:
    return await _handle(request, CompletionRequest)


async def models(request: Request) -> Response:
    state = server_state(request)
    try:
        _check_key(request, state)
    except OpenAIError as exc:
        return error_response(exc)
    return JSONResponse(model_list(state.model_name, state.created))  # stable across calls, like a real model's


async def _handle(request: Request, model: type[BaseModel]) -> Response:
    state = server_state(request)
    try:
        _check_key(request, state)
        body = await _parse(request, model, state.serving.offload if state.serving is not None else None)
        serving = state.openai
        if serving is None or not state.is_ready:
            raise OpenAIError(503, f"the model is not ready (status: {state.status})", type="service_unavailable")

        disconnected = disconnect_watch(request)
        if isinstance(body, ChatCompletionRequest):
            result = await serving.chat(body, disconnected)
        else:
            result = await serving.completion(body, disconnected)  # type: ignore[arg-type]
    except OpenAIError as exc:
        return error_response(exc)
    except ClientGone:
        return Response(status_code=499)  # nobody reads it; 499 is the log's "client closed request"
    if isinstance(result, SSEStream):
        # ChatStreamResponse calls on_close exactly once, also when the body never started, so the
        # slot cannot leak; closing the stream closes the engine requests.
        return ChatStreamResponse(result, on_close=lambda _message: result.release(), headers=SSE_HEADERS,
                                  media_type="text/event-stream", abort=result.abort, error_chunk=_error_event)
    return JSONResponse(result)


def _error_event(_last: str | None, reason: str) -> str:
    """The last event of a stream that could not be finished (OpenAI's clients raise on it)."""
    return sse(OpenAIError(503, reason, type="server_error", code="stream_interrupted").body())


def _check_key(request: Request, state: ServerState) -> None:
    """The key check for apps that mount these routes without `ApiKeyAuth` (which guards every
    route of `chatstream serve` and marks the requests it let through)."""
    if not state.api_key or request.scope.get(AUTHENTICATED_SCOPE_KEY):
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise OpenAIError(401, "You didn't provide an API key: send it as `Authorization: Bearer <key>`",
                          code="invalid_api_key")
    if not key_matches(token.strip(), state.api_key):
        raise OpenAIError(401, "Incorrect API key provided", code="invalid_api_key")


async def _parse(request: Request, model: type[BaseModel], offload: Offload | None = None) -> BaseModel:
    body = await request.body()
    try:  # a big body is parsed and checked on the tokenizing pool, off the event loop
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
    return OpenAIError(400, f"{param}: {first['msg']}" if param else first["msg"], param=param)


def _is_type_tag(part: int | str) -> bool:
    # Union members add their type to an error's location ("str", "list[int]", "TextPart");
    # the client only knows its own field names (lower case) and list indices.
    return isinstance(part, str) and (not part.isidentifier() or part[:1].isupper() or part in _TYPE_NAMES)


def error_response(exc: OpenAIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)
