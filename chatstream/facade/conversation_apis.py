"""The original's conversation APIs over the conversation store: /clear_context, /get_prompt,
/set_system_prompt, /get_reply_stats and /set_feedback, for the default request handler.

Each acts on one conversation: the request's `conversation_id` (in the JSON body, or the query
for GET), or else the session's current conversation (the one original clients talk in). The
answers keep the original's shapes (`{"success": ..., "message": ...}`); an id that is not a
UUID is a 400 naming the field, another session's conversation a 404 like an unknown one, a
store that does not answer a 503.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chatstream.conversations import Conversation, ConversationNotFound, Feedback, Message, StoreError
from chatstream.conversations.ids import check_message_id
from chatstream.facade.conversation_handler import conversation_id_in, current_conversation
from chatstream.facade.conversation_prompt import chat_prompt_of
from chatstream.facade.generation_params import merge_params
from chatstream.facade.request_handler import GENERATION_PARAMS_KEY, ChatRequestError
from chatstream.facade.sessions import BoundSession, bind_session
from chatstream.facade.store_errors import store_error_response

if TYPE_CHECKING:
    from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
    from chatstream.conversations import ConversationStore
    from chatstream.facade.chat_stream import ChatStream


def _ok(**fields: Any) -> JSONResponse:
    return JSONResponse({"success": True, "message": "success", **fields})


def _fail(message: str, status_code: int = 200, **fields: Any) -> JSONResponse:
    return JSONResponse({"success": False, "message": message, **fields}, status_code=status_code)


class Target:
    """The conversation an API call acts on (None when the session has none yet)."""

    def __init__(self, store: ConversationStore, session: BoundSession | None, conversation: Conversation | None):
        self.store, self.session, self.conversation = store, session, conversation


class ConversationApis:
    def __init__(self, chat_stream: ChatStream) -> None:
        self.chat_stream = chat_stream

    def _create_chat_prompt(self) -> AbstractChatPrompt:
        return self.chat_stream.create_chat_prompt()

    async def target(self, request: Request, given: Mapping[str, Any] | None, *, create: bool) -> Target:
        """Raises `ChatRequestError` (a malformed id, no session) and the store's errors."""
        conversation_id = conversation_id_in(dict(given or {}))
        stores = self.chat_stream.conversations
        store = await stores.get()
        session = await bind_session(request, stores, create=create)
        if session is None:
            if conversation_id is not None:  # nobody's conversation can be this request's
                raise ConversationNotFound(conversation_id)
            return Target(store, None, None)
        if conversation_id is None:
            conversation_id = await current_conversation(stores, session, create=create)
            if conversation_id is None:
                return Target(store, session, None)
        conversation = await store.get_conversation(session.id, conversation_id, include_tokens=False)
        if conversation is None:
            raise ConversationNotFound(conversation_id)
        return Target(store, session, conversation)

    async def run(self, call: Callable[[], Any]) -> Response:
        try:
            return await call()
        except ChatRequestError as exc:
            return exc.response()
        except StoreError as exc:
            return store_error_response(exc)

    # -- the APIs ----------------------------------------------------------------------------------
    async def clear_context(self, request: Request, body: Mapping[str, Any] | None) -> Response:
        """With a `conversation_id`: that conversation's messages are removed (title and system text
        stay). Without: the session's current conversation is set aside, as the original dropped its
        ChatPrompt: the next turn starts a new conversation, and the old one stays listed."""
        async def call() -> Response:
            target = await self.target(request, body, create=False)
            if target.conversation is None:
                return _fail("no context.")
            assert target.session is not None
            if conversation_id_in(dict(body or {})) is not None:
                await target.store.clear_conversation(target.session.id, target.conversation.id)
            else:
                target.session.record = await target.store.update_session(target.session.id,
                                                                           current_conversation_id=None)
            return JSONResponse({"success": True, "message": "Context successfully cleared"})

        return await self.run(call)

    async def get_prompt(self, request: Request) -> Response:
        async def call() -> Response:
            target = await self.target(request, request.query_params, create=False)
            if target.conversation is None:
                return JSONResponse({"success": True, "message": "no prompt", "prompt": None})
            chat_prompt = chat_prompt_of(target.conversation, self._create_chat_prompt)
            return _ok(prompt=urllib.parse.quote(chat_prompt.create_prompt()))

        return await self.run(call)

    async def set_system_prompt(self, request: Request, body: Mapping[str, Any], text: str) -> Response:
        async def call() -> Response:
            target = await self.target(request, body, create=True)
            if target.session is None or target.conversation is None:
                return _fail("no session", 400)
            conversation = await target.store.update_conversation(
                target.session.id, target.conversation.id, system=text if text.strip() else "")
            chat_prompt = chat_prompt_of(conversation, self._create_chat_prompt)
            return _ok(system_prompt=chat_prompt.get_system())

        return await self.run(call)

    async def get_reply_stats(self, request: Request) -> Response:
        async def call() -> Response:
            message_id = request.query_params.get("message_id")
            if not message_id:
                return _fail("message_id is required", 400, field="message_id")
            check_message_id(message_id)
            target = await self.target(request, request.query_params, create=False)
            message = _find_reply(target.conversation, message_id)
            if message is None:
                return _fail(f"unknown message_id {message_id!r}", 404, field="message_id")
            if message.status == "streaming":
                return _ok(message_id=message_id, finished=False)
            return _ok(message_id=message_id, finished=True, text=message.text, stats=self._stats(message))

        return await self.run(call)

    def _stats(self, message: Message) -> dict[str, Any]:
        replies = getattr(self.chat_stream.chat_generator, "replies", None)
        record = None if replies is None else replies.find(message.id)
        if record is not None:
            return record.stats()
        stats = message.stats
        if stats is None:
            return {"finish_reason": message.finish_reason}
        rate, count = stats.tokens_per_s, stats.completion_tokens
        decode = None if not rate or count is None or count < 2 else round((count - 1) / rate, 4)
        return {"num_prompt_tokens": stats.prompt_tokens, "num_cached_tokens": stats.cached_tokens,
                "num_output_tokens": count, "finish_reason": message.finish_reason,
                "time_to_first_token_sec": stats.time_to_first_token_s, "decode_sec": decode,
                "tokens_per_sec": rate}

    async def set_feedback(self, request: Request, body: Mapping[str, Any], message_id: str, is_like: bool | None,
                           on_feedback: Callable[[dict[str, Any]], object] | None) -> Response:
        async def call() -> Response:
            check_message_id(message_id)
            target = await self.target(request, body, create=False)
            if target.conversation is None or target.session is None:
                return _fail("No chat prompt", 400)
            message = _find_reply(target.conversation, message_id)
            if message is None:
                return _fail(f"unknown message_id {message_id!r}", 404, field="message_id")
            form_data = body.get("form_data")
            feedback = None if is_like is None else Feedback(is_like, form_data)
            await target.store.set_feedback(target.session.id, target.conversation.id, message_id, feedback)
            if on_feedback is not None:
                chat_prompt = chat_prompt_of(target.conversation, self._create_chat_prompt)
                on_feedback({
                    "is_like": is_like, "form_data": form_data,
                    "prompt": chat_prompt.create_prompt({"to_message_id": message_id}),
                    "target_message_id": message_id, "target_message": message.text,
                    "generation_params": merge_params(self.chat_stream.params,
                                                      target.session.data.get(GENERATION_PARAMS_KEY)),
                    "conversation_id": target.conversation.id,
                })
            return _ok(target_message_id=message_id)

        return await self.run(call)


def _find_reply(conversation: Conversation | None, message_id: str) -> Message | None:
    if conversation is None:
        return None
    index = conversation.index_of(message_id)
    if index is None or conversation.messages[index].role != "assistant":
        return None
    return conversation.messages[index]
