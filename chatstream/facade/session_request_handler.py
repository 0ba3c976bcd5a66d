"""`SimpleSessionRequestHandler`, the default request handler: each browser's conversation
(its ChatPrompt) and generation overrides live in its server-side HTTP session
(`request.state.session`, as set by fastsession's `FastSessionMiddleware`); the cookie holds only
the signed session id.
"""

from __future__ import annotations

import uuid
from collections.abc import MutableMapping
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from chatstream.facade.chat_stream_response import DISCONNECTED_BEFORE_STREAMING
from chatstream.facade.prompt_hooks import PromptHookError
from chatstream.facade.request_handler import (
    CHAT_PROMPT_KEY, GENERATION_PARAMS_KEY, AbstractRequestHandler, ChatRequestError, FinishedCallback,
    parse_chat_request)


class HttpSession(Protocol):
    """The server-side session of a browser (fastsession's `FastSession`, on `request.state.session`)."""

    def get_session(self) -> MutableMapping[str, Any]: ...

    def save_session(self) -> None: ...

    def get_session_id(self) -> str: ...


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
                              streaming_finished_callback: FinishedCallback) -> Response:
        session = session_of(request)
        store = session.get_session()
        chat_request = parse_chat_request(request_body)
        chat_prompt = store.get(CHAT_PROMPT_KEY)
        if chat_prompt is None:
            chat_prompt = store[CHAT_PROMPT_KEY] = self.new_chat_prompt()
            session.save_session()
        self.start_turn(chat_prompt, chat_request)
        message_id = str(uuid.uuid4())

        def on_close(message: str) -> None:
            if message == DISCONNECTED_BEFORE_STREAMING:
                self.undo_unstarted_turn(chat_prompt, chat_request)
            if self.chat_generator is not None:
                self.chat_generator.abort(message_id)  # no-op when the reply finished
            session.save_session()  # the (partial) reply stays in the history
            streaming_finished_callback(request, message)

        try:
            return self.stream_reply(chat_prompt, message_id, store.get(GENERATION_PARAMS_KEY), on_close)
        except PromptHookError as exc:
            self.undo_unstarted_turn(chat_prompt, chat_request)
            raise ChatRequestError(500, "internal_server_error", f"the chat prompt failed: {exc.hook} "
                                   "(see the server log)", callback_message="unknown_error_occurred,while "
                                   "preparing the prompt") from exc
