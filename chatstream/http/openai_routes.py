"""The OpenAI-compatible routes: `/v1/chat/completions`, `/v1/completions`, `/v1/responses`,
`/v1/models` (and `/v1/models/{model}`), and vLLM's side routes `/tokenize`, `/detokenize`, `/version`.

This module owns only the route table and turning what the serving layer returns into a response:
a dict becomes JSON, an `SSEStream` an event stream, an `OpenAIError` an error in OpenAI's shape
(404 and 405 under /v1 too). Keys, bodies and errors are `chatstream.http.openai.route_support`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chatstream.facade.chat_stream_response import ChatStreamResponse
from chatstream.facade.disconnect import ClientGone, DisconnectWatch, disconnect_watch
from chatstream.http.openai import responses_routes, side_routes
from chatstream.http.openai.jobs import SSEStream
from chatstream.http.openai.route_support import (
    check_key,
    error_response,
    openai_http_errors,
    parse_body,
    validation_error,  # noqa: F401 - part of this module's interface (tests use it)
)
from chatstream.http.openai_protocol import ChatCompletionRequest, CompletionRequest, OpenAIError, model_list, sse
from chatstream.http.openai_serving import OpenAIServing
from chatstream.http.server_state import server_state

# No proxy buffering, no caching: each event must reach the client as soon as it is written.
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}

Handler = Callable[[OpenAIServing, Any, DisconnectWatch], Awaitable["dict[str, Any] | SSEStream"]]


def add_openai_routes(app: Starlette) -> None:
    """Register the /v1 routes on a FastAPI or Starlette app whose `app.state.server` is a `ServerState`."""
    add = app.router.add_route
    add("/v1/chat/completions", chat_completions, methods=["POST"], name="openai_chat_completions")
    add("/v1/completions", completions, methods=["POST"], name="openai_completions")
    add("/v1/responses", responses_routes.create, methods=["POST"], name="openai_responses")
    add("/v1/responses/{response_id}", responses_routes.retrieve, methods=["GET"], name="openai_response")
    add("/v1/responses/{response_id}", responses_routes.delete, methods=["DELETE"], name="openai_response_delete")
    add("/v1/models", models, methods=["GET"], name="openai_models")
    add("/v1/models/{model}", side_routes.model, methods=["GET"], name="openai_model")
    add("/tokenize", side_routes.tokenize, methods=["POST"], name="tokenize")
    add("/detokenize", side_routes.detokenize, methods=["POST"], name="detokenize")
    add("/version", side_routes.version, methods=["GET"], name="version")
    app.add_exception_handler(HTTPException, openai_http_errors)


async def chat_completions(request: Request) -> Response:
    return await handle(request, ChatCompletionRequest, OpenAIServing.chat)


async def completions(request: Request) -> Response:
    return await handle(request, CompletionRequest, OpenAIServing.completion)


async def models(request: Request) -> Response:
    state = server_state(request)
    try:
        check_key(request, state)
    except OpenAIError as exc:
        return error_response(exc)
    # `created` is stable across calls, like a real model's.
    return JSONResponse(model_list(state.model_name, state.created, side_routes.max_model_len(state)))


async def handle(request: Request, model: type[BaseModel], serve: Handler) -> Response:
    """Key, body, readiness, then `serve(serving, body, disconnect_watch)`, answered as JSON or a stream."""
    state = server_state(request)
    try:
        check_key(request, state)
        body = await parse_body(request, model)
        serving = state.openai
        if serving is None or not state.is_ready:
            raise OpenAIError(503, f"the model is not ready (status: {state.status})", type="service_unavailable")
        result = await serve(serving, body, disconnect_watch(request))
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
