"""Request handlers: where a conversation lives between requests, and how one /chat_stream request
turns into a streamed reply.

`AbstractRequestHandler` is the original's extension point for custom persistence (history in a
database, a conversation key in a header, ...). `SimpleSessionRequestHandler`, the default, keeps
the ChatPrompt in the server-side HTTP session (`request.state.session`, as set by fastsession's
`FastSessionMiddleware`); the cookie holds only the signed session id.

Contract of `process_request(request, request_body, streaming_finished_callback)`: return a
Response, or raise `ChatRequestError` for a request it refuses; once it returned a response, it
must make sure `streaming_finished_callback(message)` is called exactly once (a
`ChatStreamResponse` guarantees that), because the caller's run slot is released there.
"""

from __future__ import annotations

import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chatstream.facade.chat_stream_response import DISCONNECTED_BEFORE_STREAMING, ChatStreamResponse
from chatstream.facade.json_body import JsonBodyError, parse_json
from chatstream.facade.json_body import check_value as check_json_value

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
    from chatstream.facade.chat_output import ChatReplyGenerator

CHAT_PROMPT_KEY = "chat_prompt"
GENERATION_PARAMS_KEY = "generation_params"
MESSAGE_ID_HEADER = "X-ChatStream-Last-Generated-Message-Id"


class ChatRequestError(Exception):
    """A request refused with a JSON error; `callback_message` is what the finish callback gets."""

    def __init__(self, status_code: int, error: str, detail: str, field: str | None = None,
                 callback_message: str | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.payload: dict[str, Any] = {"error": error, "detail": detail}
        if field is not None:
            self.payload["field"] = field
        self.callback_message = callback_message or f"unknown_error_occurred,while {detail}"

    def response(self) -> JSONResponse:
        return JSONResponse(self.payload, status_code=self.status_code)


@dataclass(frozen=True)
class ChatRequest:
    """The /chat_stream request body: `{"user_input": str | null, "regenerate": bool}`."""

    user_input: str | None
    regenerate: bool


def _invalid(detail: str, field: str | None = None) -> ChatRequestError:
    return ChatRequestError(400, "invalid_request", detail, field)


def parse_chat_request(body: bytes | str | dict[str, Any]) -> ChatRequest:
    """Validate a /chat_stream body; raises `ChatRequestError` (400) naming the bad field."""
    try:
        body = parse_json(body or b"null") if isinstance(body, (bytes, str)) else check_json_value(body)
    except JsonBodyError as exc:
        raise _invalid(str(exc), exc.field) from None
    if not isinstance(body, dict):
        raise _invalid('the request body must be a JSON object {"user_input": string, "regenerate": boolean}')
    regenerate = body.get("regenerate", False)
    if regenerate is None:
        regenerate = False
    if not isinstance(regenerate, bool):
        raise _invalid(f"regenerate must be a JSON boolean, got {regenerate!r}", "regenerate")
    user_input = body.get("user_input")
    if not regenerate:
        if not isinstance(user_input, str):
            raise _invalid("user_input is required: a non-empty string (or set regenerate to true)", "user_input")
        if not user_input.strip():
            raise _invalid("user_input must not be empty", "user_input")
    return ChatRequest(user_input if isinstance(user_input, str) else None, regenerate)


class HttpSession(Protocol):
    """The server-side session of a browser (fastsession's `FastSession`, on `request.state.session`)."""

    def get_session(self) -> MutableMapping[str, Any]: ...

    def save_session(self) -> None: ...

    def get_session_id(self) -> str: ...


class AbstractRequestHandler(ABC):
    """Base of request handlers. ChatStream injects `chat_generator`, `chat_prompt_clazz`,
    `tokenizer` and `logger` before the first request."""

    chat_generator: ChatReplyGenerator | None = None
    chat_prompt_clazz: type[AbstractChatPrompt] | None = None
    tokenizer: PreTrainedTokenizerBase | None = None
    logger: logging.Logger | None = None

    def create_chat_prompt(self) -> AbstractChatPrompt:
        if self.chat_prompt_clazz is None:
            raise ChatRequestError(500, "internal_server_error", "no chat_prompt_clazz was given to ChatStream")
        chat_prompt = self.chat_prompt_clazz()
        if self.tokenizer is not None:
            chat_prompt.set_tokenizer(self.tokenizer)
        chat_prompt.build_initial_prompt(chat_prompt)
        return chat_prompt

    def stream_reply(self, chat_prompt: AbstractChatPrompt, message_id: str,
                     generation_params: dict[str, Any] | None, on_close: Callable[[str], None]) -> ChatStreamResponse:
        """The streamed reply for the prompt's open responder turn, in the /chat_stream format."""
        generator = self.chat_generator
        if generator is None:
            raise ChatRequestError(500, "internal_server_error",
                                   "the request handler has no chat_generator: give it to ChatStream(request_handler=...)")
        chunks = generator.generate(chat_prompt, {
            "output_type": "response_text", "message_id": message_id, "generation_params": generation_params})
        return ChatStreamResponse(chunks, on_close, headers={MESSAGE_ID_HEADER: message_id},
                                  abort=lambda: generator.abort(message_id))

    @staticmethod
    def start_turn(chat_prompt: AbstractChatPrompt, chat_request: ChatRequest) -> None:
        """Open the responder turn this request generates: a new exchange, or the last one again."""
        if chat_request.regenerate:
            if chat_prompt.is_empty():
                raise ChatRequestError(
                    400, "invalid_request", "regenerate requested even though the prompt is empty", "regenerate",
                    "unknown_error_occurred,while processing regenerate requested even though the prompt is empty")
            chat_prompt.clear_last_responder_message()
        else:
            chat_prompt.add_requester_msg(chat_request.user_input)
            chat_prompt.add_responder_msg(None)

    @staticmethod
    def undo_unstarted_turn(chat_prompt: AbstractChatPrompt, chat_request: ChatRequest) -> None:
        """A reply that never started leaves no half-open exchange in the history."""
        if chat_request.regenerate or chat_prompt.get_responder_last_msg():
            return
        contents = chat_prompt.chat_contents
        if contents and getattr(contents[-1].get_role_type(), "name", None) == "RESPONDER":
            chat_prompt.remove_last_responder_msg()
            chat_prompt.remove_last_requester_msg()

    @abstractmethod
    async def process_request(self, request: Request, request_body: bytes,
                              streaming_finished_callback: Callable[[str], None]) -> Response: ...

    @abstractmethod
    def get_request_handler_type(self) -> str: ...

    def conversation_key(self, request: Request) -> str | None:
        """Requests with the same key are served one at a time (None: no serialization)."""
        return None


SKIP_SESSION_HEADER_NAME = "X-FastSession-Skip"


def session_of(request: Request) -> HttpSession:
    """The request's HTTP session. An agent that skipped sessions (`X-FastSession-Skip`) has none,
    and a conversation kept in the session cannot be served without one: that is the client's
    400, not a server error. A missing session middleware is the server's 500."""
    session = getattr(request.state, "session", None)
    if session is not None:
        return session
    callback_message = "unknown_error_occurred,while processing simple session request"
    if SKIP_SESSION_HEADER_NAME in request.headers:
        raise ChatRequestError(
            400, "session_required",
            f"this conversation lives in the HTTP session, and a request with {SKIP_SESSION_HEADER_NAME} has "
            "none: send the request without that header (keeping the session cookie), or serve agents with a "
            "request handler that keeps conversations elsewhere", callback_message=callback_message)
    raise ChatRequestError(
        500, "internal_server_error",
        "no session: add chat_stream.append_middlewares(app) or fastsession's FastSessionMiddleware",
        callback_message=callback_message)


class SimpleSessionRequestHandler(AbstractRequestHandler):
    """Keeps each browser's ChatPrompt and generation overrides in its server-side session."""

    def get_request_handler_type(self) -> str:
        return "http_session"

    def conversation_key(self, request: Request) -> str | None:
        session = getattr(request.state, "session", None)
        return None if session is None else str(session.get_session_id())

    async def process_request(self, request: Request, request_body: bytes,
                              streaming_finished_callback: Callable[[str], None]) -> Response:
        session = session_of(request)
        store = session.get_session()
        chat_request = parse_chat_request(request_body)
        chat_prompt = store.get(CHAT_PROMPT_KEY)
        if chat_prompt is None:
            chat_prompt = store[CHAT_PROMPT_KEY] = self.create_chat_prompt()
            session.save_session()
        self.start_turn(chat_prompt, chat_request)
        message_id = str(uuid.uuid4())

        def on_close(message: str) -> None:
            if message == DISCONNECTED_BEFORE_STREAMING:
                self.undo_unstarted_turn(chat_prompt, chat_request)
            if self.chat_generator is not None:
                self.chat_generator.abort(message_id)  # no-op when the reply finished
            session.save_session()  # the (partial) reply stays in the history
            streaming_finished_callback(message)

        return self.stream_reply(chat_prompt, message_id, store.get(GENERATION_PARAMS_KEY), on_close)
