"""The conversation routes: a session's conversations as JSON, for the web page and any client.

| route | answer |
|---|---|
| `GET /conversations?limit=20&cursor=` | this session's conversations, last updated first: `{"conversations": [...], "next_cursor"}` |
| `POST /conversations` `{"title"?, "system"?}` | 201, the new conversation |
| `GET /conversations/{id}` | the conversation with its messages |
| `PATCH /conversations/{id}` `{"title"?, "system"?}` | the updated conversation |
| `DELETE /conversations/{id}` | 204 |
| `GET /conversations/{id}/export` | the conversation in the export format (docs/conversation-store.md) |
| `POST /conversations/import` (an export) | 201, a new conversation of this session |
| `POST /conversations/{id}/fork` `{"before_message_id", "title"?}` | 201, a new conversation with the messages before that user message (edit and resend) |

They are registered by `append_apis` under the API name "conversations" (one role name for all of
them), as FastAPI routes so they show in `/openapi.json`. Only POST creates a session; reading
without one is an empty list or a 404. Another session's conversation is a 404 exactly like an
unknown id; a malformed id or body a 400 naming the field (`problems` lists every problem of an
import); a store that does not answer a 503. Bodies are parsed here, not by FastAPI, so every
error has the same shape; their schemas are declared for the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, StrictStr
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chatstream.conversations import (
    Conversation, ConversationNotFound, ConversationSummary, Message, Problem, StoreError, ValidationFailed)
from chatstream.conversations.export_format import ConversationExport
from chatstream.conversations.ids import check_conversation_id
from chatstream.facade.json_body import JsonBodyError, parse_json
from chatstream.facade.sessions import BoundSession, bind_session, prepare_session
from chatstream.facade.store_errors import store_error_response

if TYPE_CHECKING:
    from chatstream.conversations import ConversationStore
    from chatstream.facade.chat_stream import ChatStream

API_NAME = "conversations"
ChatStreamResolver = Callable[[Request], "ChatStream | None"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConversationCreate(_Body):
    title: StrictStr = ""
    system: StrictStr = ""


class ConversationUpdate(_Body):
    title: StrictStr | None = None
    system: StrictStr | None = None


class ConversationFork(_Body):
    before_message_id: StrictStr
    title: StrictStr | None = None


class MessageOut(BaseModel):
    id: str
    role: str
    text: str
    created_at: float
    status: str
    finish_reason: str | None = None
    feedback: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None


class ConversationOut(BaseModel):
    id: str
    title: str
    system: str
    created_at: float
    updated_at: float
    messages: list[MessageOut]


class ConversationSummaryOut(BaseModel):
    id: str
    title: str
    created_at: float
    updated_at: float
    num_messages: int


class ConversationListOut(BaseModel):
    conversations: list[ConversationSummaryOut]
    next_cursor: str | None


def message_json(message: Message) -> dict[str, Any]:
    return {"id": message.id, "role": message.role, "text": message.text, "created_at": message.created_at,
            "status": message.status, "finish_reason": message.finish_reason,
            "feedback": None if message.feedback is None else asdict(message.feedback),
            "stats": None if message.stats is None else asdict(message.stats)}


def conversation_json(conversation: Conversation) -> dict[str, Any]:
    return {"id": conversation.id, "title": conversation.title, "system": conversation.system,
            "created_at": conversation.created_at, "updated_at": conversation.updated_at,
            "messages": [message_json(m) for m in conversation.messages]}


def summary_json(summary: ConversationSummary) -> dict[str, Any]:
    return asdict(summary)


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def _parse(model: type[_Body], raw: bytes) -> Any:
    try:
        return model.model_validate_json(raw or b"{}")
    except PydanticValidationError as exc:
        problems = [Problem(".".join(str(p) for p in e["loc"]) or None, e["msg"]) for e in exc.errors(include_url=False)]
        raise ValidationFailed(problems, "invalid request body") from None


Handler = Callable[["ChatStream", Request], Awaitable[Response]]


class ConversationRoutes:
    """The handlers; each resolves the ChatStream, checks the caller's role, answers store errors."""

    def __init__(self, resolve: ChatStreamResolver) -> None:
        self.resolve = resolve

    def endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            chat_stream = self.resolve(request)
            if chat_stream is None:
                return JSONResponse({"error": "engine_unavailable", "detail": "the model is still loading"},
                                    status_code=503)
            if chat_stream.client_roles.enabled:
                await prepare_session(request)
            denied = chat_stream.verify_role_for_api(request, API_NAME)
            if denied is not None:
                return denied
            try:
                return await handler(chat_stream, request)
            except StoreError as exc:
                return store_error_response(exc)

        return run

    @staticmethod
    async def _session(chat_stream: ChatStream, request: Request, create: bool
                       ) -> tuple[ConversationStore, BoundSession | None]:
        store = await chat_stream.conversations.get()
        return store, await bind_session(request, chat_stream.conversations, create=create)

    async def _owned(self, chat_stream: ChatStream, request: Request) -> tuple[ConversationStore, BoundSession, str]:
        """The store, the session and the path's conversation id (404 without a session)."""
        conversation_id = check_conversation_id(request.path_params["conversation_id"])
        store, session = await self._session(chat_stream, request, create=False)
        if session is None:
            raise ConversationNotFound(conversation_id)
        return store, session, conversation_id

    async def list(self, chat_stream: ChatStream, request: Request) -> Response:
        limit_text = request.query_params.get("limit", "20")
        try:
            limit = int(limit_text)
        except ValueError:
            raise ValidationFailed.one("limit", f"must be an integer from 1 to 100, got {limit_text!r}") from None
        store, session = await self._session(chat_stream, request, create=False)
        if session is None:
            return JSONResponse({"conversations": [], "next_cursor": None})
        page = await store.list_conversations(session.id, limit=limit, cursor=request.query_params.get("cursor"))
        return JSONResponse({"conversations": [summary_json(s) for s in page.items], "next_cursor": page.next_cursor})

    async def create(self, chat_stream: ChatStream, request: Request) -> Response:
        body = _parse(ConversationCreate, await request.body())
        store, session = await self._session(chat_stream, request, create=True)
        assert session is not None
        conversation = await store.create_conversation(session.id, title=body.title, system=body.system)
        return JSONResponse(conversation_json(conversation), status_code=201)

    async def get(self, chat_stream: ChatStream, request: Request) -> Response:
        store, session, conversation_id = await self._owned(chat_stream, request)
        conversation = await store.get_conversation(session.id, conversation_id, include_tokens=False)
        if conversation is None:
            raise ConversationNotFound(conversation_id)
        return JSONResponse(conversation_json(conversation))

    async def update(self, chat_stream: ChatStream, request: Request) -> Response:
        body = _parse(ConversationUpdate, await request.body())
        store, session, conversation_id = await self._owned(chat_stream, request)
        conversation = await store.update_conversation(session.id, conversation_id, title=body.title,
                                                       system=body.system)
        return JSONResponse(conversation_json(conversation))

    async def delete(self, chat_stream: ChatStream, request: Request) -> Response:
        store, session, conversation_id = await self._owned(chat_stream, request)
        await store.delete_conversation(session.id, conversation_id)
        return Response(status_code=204)

    async def export(self, chat_stream: ChatStream, request: Request) -> Response:
        store, session, conversation_id = await self._owned(chat_stream, request)
        exported = await store.export_conversation(session.id, conversation_id)
        return JSONResponse(exported, headers={
            "Content-Disposition": f'attachment; filename="conversation-{conversation_id}.json"'})

    async def import_(self, chat_stream: ChatStream, request: Request) -> Response:
        raw = await request.body()
        try:  # depth, number size, NaN and lone surrogates checked before the store parses it
            parse_json(raw or b"null")
        except JsonBodyError as exc:
            raise ValidationFailed([Problem(None, f"not valid JSON: {exc}")], "invalid conversation import") from None
        store, session = await self._session(chat_stream, request, create=True)
        assert session is not None
        conversation = await store.import_conversation(session.id, raw)
        return JSONResponse(conversation_json(conversation), status_code=201)

    async def fork(self, chat_stream: ChatStream, request: Request) -> Response:
        body = _parse(ConversationFork, await request.body())
        store, session, conversation_id = await self._owned(chat_stream, request)
        conversation = await store.fork_conversation(session.id, conversation_id, body.before_message_id,
                                                     title=body.title)
        return JSONResponse(conversation_json(conversation), status_code=201)


def _endpoint(run: Callable[[Request], Awaitable[Response]], with_id: bool, name: str) -> Callable[..., Any]:
    """A FastAPI endpoint whose signature declares only the path's id (the rest is read by hand)."""
    if with_id:
        async def endpoint(request: Request, conversation_id: str) -> Response:
            return await run(request)
    else:
        async def endpoint(request: Request) -> Response:  # type: ignore[misc]
            return await run(request)
    endpoint.__name__ = name
    return endpoint


_LIST_PARAMETERS = {"parameters": [
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "next_cursor of the previous page"}]}


def conversation_router(resolve: ChatStreamResolver) -> APIRouter:
    """The routes, for `app.include_router` (FastAPI) or `app.router.routes.extend` (Starlette)."""
    routes = ConversationRoutes(resolve)
    router = APIRouter(tags=["conversations"])
    path = "/conversations/{conversation_id}"
    import_body = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ConversationExport"}}}}}
    table: list[tuple[str, str, str, Handler, dict[str, Any]]] = [
        ("list_conversations", "GET", "/conversations", routes.list, {
            "response_model": ConversationListOut, "openapi_extra": _LIST_PARAMETERS,
            "summary": "This session's conversations, last updated first"}),
        ("create_conversation", "POST", "/conversations", routes.create, {
            "response_model": ConversationOut, "status_code": 201, "openapi_extra": _body_schema(ConversationCreate),
            "summary": "Start a conversation"}),
        ("import_conversation", "POST", "/conversations/import", routes.import_, {
            "response_model": ConversationOut, "status_code": 201, "openapi_extra": import_body,
            "summary": "Import an exported conversation (a new conversation of this session)"}),
        ("get_conversation", "GET", path, routes.get, {
            "response_model": ConversationOut, "summary": "A conversation and its messages"}),
        ("update_conversation", "PATCH", path, routes.update, {
            "response_model": ConversationOut, "openapi_extra": _body_schema(ConversationUpdate),
            "summary": "Rename a conversation, or set its system text"}),
        ("delete_conversation", "DELETE", path, routes.delete, {
            "status_code": 204, "response_class": Response, "summary": "Delete a conversation"}),
        ("export_conversation", "GET", path + "/export", routes.export, {
            "response_model": ConversationExport, "summary": "The conversation in the export format"}),
        ("fork_conversation", "POST", path + "/fork", routes.fork, {
            "response_model": ConversationOut, "status_code": 201, "openapi_extra": _body_schema(ConversationFork),
            "summary": "A new conversation with the messages before a user message (edit and resend)"}),
    ]
    for name, method, route_path, handler, options in table:
        options.setdefault("response_class", JSONResponse)
        endpoint = _endpoint(routes.endpoint(handler), "{conversation_id}" in route_path, name)
        router.add_api_route(route_path, endpoint, methods=[method], name=name, **options)
    return router
