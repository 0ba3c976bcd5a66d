"""`ConversationRequestHandler`, the default request handler: conversations live in the store.

A /chat_stream request names a conversation with `conversation_id`, or (as every original client
does) none: then the session's current conversation is used, and made (and made current) when
there is none. The handler resolves that target before the request waits for its turn
(`resolve_target`, so the wait is per conversation and counted per session), then
`process_request` opens the reply and streams it through `ConversationTurns`, in the original
wire format, with the reply's id in `X-ChatStream-Last-Generated-Message-Id` and the
conversation's in `X-ChatStream-Conversation-Id`.

Another session's conversation id is answered exactly like an unknown one (404); a malformed id
is a 400; a store that does not answer a 503. The session comes from `request.state.session`
(ours, or a user's own `FastSessionMiddleware`); an agent that skipped the session gets a 400.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from chatstream.conversations import StoreError
from chatstream.conversations.ids import check_conversation_id
from chatstream.facade.chat_logging import log_failure_once
from chatstream.facade.chat_stream_response import DISCONNECTED_BEFORE_STREAMING, ChatStreamResponse
from chatstream.facade.conversation_turns import ConversationTurns
from chatstream.facade.request_handler import (
    CHAT_PROMPT_KEY, GENERATION_PARAMS_KEY, MESSAGE_ID_HEADER, AbstractRequestHandler, ChatRequestError, parse_chat_request)
from chatstream.facade.json_body import JsonBodyError, parse_json
from chatstream.facade.sessions import BoundSession, bind_session
from chatstream.facade.store_errors import StoreRequestError
from chatstream.facade.store_handle import StoreHandle

CONVERSATION_ID_HEADER = "X-ChatStream-Conversation-Id"
SKIP_HEADER = "X-FastSession-Skip"
_TARGET = "chatstream_turn_target"


@dataclass(frozen=True)
class TurnTarget:
    """Which conversation a /chat_stream request writes to, and whose it is."""

    session_id: str
    conversation_id: str
    session: BoundSession

    @property
    def lock_key(self) -> str:
        return self.conversation_id


def no_session_error(request: Request) -> ChatRequestError:
    if request.headers.get(SKIP_HEADER) is not None:
        return ChatRequestError(
            400, "session_required", f"a conversation needs a session; requests with {SKIP_HEADER} have none "
            "(use the OpenAI API, /v1/chat/completions, for stateless calls)",
            callback_message="unknown_error_occurred,while processing simple session request")
    return ChatRequestError(
        500, "internal_server_error",
        "no session: add chat_stream.append_middlewares(app) or fastsession's FastSessionMiddleware",
        callback_message="unknown_error_occurred,while processing simple session request")


def conversation_id_in(body: object) -> str | None:
    """The `conversation_id` of a JSON body (None when absent); `ChatRequestError` 400 when malformed."""
    if not isinstance(body, dict) or body.get("conversation_id") is None:
        return None
    try:
        return check_conversation_id(body["conversation_id"])
    except StoreError as exc:
        raise StoreRequestError(exc) from None


class ConversationRequestHandler(AbstractRequestHandler):
    """Keeps conversations in the conversation store (see the module docstring). ChatStream gives it
    `conversations` (its `StoreHandle`) and `turns` besides the original's injected attributes."""

    conversations: StoreHandle | None = None
    turns: ConversationTurns | None = None

    def get_request_handler_type(self) -> str:
        return "conversation_store"

    def conversation_key(self, request: Request) -> str | None:
        target = getattr(request.state, _TARGET, None)
        return None if target is None else target.lock_key

    def stores(self) -> StoreHandle:
        if self.conversations is None:
            raise ChatRequestError(500, "internal_server_error", "the request handler has no conversation store")
        return self.conversations

    async def resolve_target(self, request: Request, body: dict[str, Any] | None = None) -> TurnTarget:
        """The conversation this request writes to (see the module docstring); kept on the request."""
        target = getattr(request.state, _TARGET, None)
        if target is not None:
            return target
        if body is None:
            body = _json_object(await request.body())
        conversation_id = conversation_id_in(body)
        try:
            session = await bind_session(request, self.stores(), create=True)
            if session is None:
                raise no_session_error(request)
            store = await self.stores().get()
            if conversation_id is not None:
                if await store.get_conversation(session.id, conversation_id, include_tokens=False) is None:
                    raise StoreRequestError(_not_found(conversation_id))
            else:
                conversation_id = await current_conversation(self.stores(), session, create=True)
        except StoreError as exc:
            raise StoreRequestError(exc) from None
        assert conversation_id is not None
        target = TurnTarget(session.id, conversation_id, session)
        setattr(request.state, _TARGET, target)
        return target

    async def process_request(self, request: Request, request_body: bytes,
                              streaming_finished_callback: Callable[[str], None]) -> Response:
        body = _json_object(request_body)
        chat_request = parse_chat_request(body if body is not None else request_body)
        target = await self.resolve_target(request, body)
        turns = self.turns
        if turns is None:
            raise ChatRequestError(500, "internal_server_error", "the request handler was not given to a ChatStream")
        try:
            store = await self.stores().get()
            turn = await turns.open(store, target.session_id, target.conversation_id,
                                    None if chat_request.regenerate else chat_request.user_input)
        except StoreError as exc:
            raise StoreRequestError(exc) from None
        generator = self.chat_generator
        try:
            prepared = await turns.prepare(turn, {"output_type": "response_text",
                                                  "generation_params": target.session.data.get(GENERATION_PARAMS_KEY)})
        except Exception as exc:
            log_failure_once(self.logger, exc, "the reply could not be prepared")
            turns.close(turn, "not_started")
            await turn.closed  # the open reply is gone before the conversation's turn is given back
            raise
        chunks = turns.stream(turn, prepared=prepared)
        # As the original's handler kept it: the conversation's ChatPrompt in the session dict, for
        # finish callbacks written for it (in this process only: the store holds the conversation).
        target.session.data[CHAT_PROMPT_KEY] = turn.chat_prompt

        def on_close(message: str) -> None:
            if generator is not None:
                generator.abort(turn.reply_id)  # no-op when the reply finished
            if message == DISCONNECTED_BEFORE_STREAMING and not turn.started:
                turns.close(turn, "not_started")
            # The run slot and the conversation's turn are given back once the reply is stored.
            turn.closed.add_done_callback(lambda _: streaming_finished_callback(message))

        return ChatStreamResponse(chunks, on_close, headers={
            MESSAGE_ID_HEADER: turn.reply_id, CONVERSATION_ID_HEADER: turn.conversation_id})


async def current_conversation(stores: StoreHandle, session: BoundSession, *, create: bool) -> str | None:
    """The session's current conversation (the one original clients talk in); a new one is made
    current when there is none (or it is gone) and `create`. Requests of one session that arrive
    together make one conversation, not one each."""
    store = await stores.get()
    current = session.current_conversation_id
    if current is not None and await store.get_conversation(session.id, current, include_tokens=False) is not None:
        return current
    if not create:
        return None
    async with stores.exclusive("current:" + session.id):
        record = await store.get_session(session.id)  # another request may have made it meanwhile
        current = None if record is None else record.current_conversation_id
        if current is not None and await store.get_conversation(session.id, current, include_tokens=False):
            return current
        conversation = await store.create_conversation(session.id)
        session.record = await store.update_session(session.id, current_conversation_id=conversation.id)
        return conversation.id


def _not_found(conversation_id: str) -> StoreError:
    from chatstream.conversations import ConversationNotFound

    return ConversationNotFound(conversation_id)


def _json_object(body: bytes | str | None) -> dict[str, Any] | None:
    try:
        parsed = parse_json(body or b"null")
    except JsonBodyError:  # parse_chat_request says what is wrong
        return None
    return parsed if isinstance(parsed, dict) else None
