"""The routes of OpenAI's Responses API: create, retrieve and delete a response.

`POST /v1/responses` runs through the same route wrapper as chat (key, body, readiness, JSON or a
stream); `GET` and `DELETE /v1/responses/{id}` read the server's store of recent responses.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chatstream.facade.disconnect import DisconnectWatch
from chatstream.http.openai.jobs import SSEStream
from chatstream.http.openai.responses_api import ResponsesRequest
from chatstream.http.openai.route_support import check_key, error_response
from chatstream.http.openai.wire import OpenAIError
from chatstream.http.openai_serving import OpenAIServing
from chatstream.http.server_state import server_state


async def create(request: Request) -> Response:
    from chatstream.http.openai_routes import handle

    return await handle(request, ResponsesRequest, _create)


async def _create(serving: OpenAIServing, body: ResponsesRequest,
                  watch: DisconnectWatch) -> dict[str, Any] | SSEStream:
    return await serving.responses.create(body, watch)


async def retrieve(request: Request) -> Response:
    try:
        serving, response_id = _target(request)
        stored = serving.responses.store.get(response_id)
        if stored is None:
            raise _not_found(response_id)
    except OpenAIError as exc:
        return error_response(exc)
    return JSONResponse(stored.response)


async def delete(request: Request) -> Response:
    try:
        serving, response_id = _target(request)
        if not serving.responses.store.delete(response_id):
            raise _not_found(response_id)
    except OpenAIError as exc:
        return error_response(exc)
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})


def _target(request: Request) -> tuple[OpenAIServing, str]:
    state = server_state(request)
    check_key(request, state)
    if state.openai is None:
        raise OpenAIError(503, f"the model is not ready (status: {state.status})", type="service_unavailable")
    return state.openai, request.path_params["response_id"]


def _not_found(response_id: str) -> OpenAIError:
    return OpenAIError(404, f"No response with id '{response_id}' found", param="response_id", code="not_found")
