"""Request handlers: where a conversation lives between requests, and how one /chat_stream request
turns into a streamed reply.

`AbstractRequestHandler` is the original's extension point for custom persistence (history in a
database, a conversation key in a header, ...), kept with the original's contract so handlers
written for it run unchanged: the attributes ChatStream injects (`chat_generator`,
`chat_prompt_clazz`, `tokenizer`, `logger`, `eloc`, `client_role_wrapper`), `create_chat_prompt()`,
the async generator `generate(chat_prompt, finished_callback, request, generation_params,
message_id)`, role promotion, and the helpers `get_bool_from_dict` and
`return_internal_server_error_response`. `SimpleSessionRequestHandler`
(`chatstream.facade.session_request_handler`), the default, keeps the ChatPrompt in the
server-side HTTP session.

Contract of `process_request(request, request_body, streaming_finished_callback)`: return a
Response (or raise `ChatRequestError` for a request it refuses) and make sure
`streaming_finished_callback(request, message)` is eventually called, awaited or not (it
releases the request's run slot). ChatStream does not rely on the last part: whatever a
handler raises, returns or forgets, the slot and the session lock are released when its
response is over (`chatstream.facade.finish_report`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chatstream.facade.chat_logging import log_failure_once
from chatstream.facade.chat_stream_response import ChatStreamResponse, fixed_text_response
from chatstream.facade.json_body import JsonBodyError, parse_json
from chatstream.facade.json_body import check_value as check_json_value

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
    from chatstream.facade.chat_output import ChatReplyGenerator
    from chatstream.facade.client_roles import ClientRoles
    from chatstream.facade.log_locale import EasyLocale

CHAT_PROMPT_KEY = "chat_prompt"
GENERATION_PARAMS_KEY = "generation_params"
MESSAGE_ID_HEADER = "X-ChatStream-Last-Generated-Message-Id"
DEV_TOOL_HEADER = "X-ChatStream-API-DevTool-Enabled"

# The finish callback a request handler gets: (message) or (request, message); may be awaited.
FinishedCallback = Callable[..., object]


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



async def _call(callback: Callable[..., object], *args: object) -> None:
    """Call a callback that may be sync or async."""
    result = callback(*args)
    if inspect.isawaitable(result):
        await result


class AbstractRequestHandler(ABC):
    """Base of request handlers. ChatStream injects `chat_generator`, `chat_prompt_clazz`,
    `tokenizer`, `logger`, `eloc` (an `EasyLocale` for log messages in en/ja) and
    `client_role_wrapper` (the role table) before the first request."""

    chat_generator: ChatReplyGenerator | None = None
    chat_prompt_clazz: type[AbstractChatPrompt] | None = None
    tokenizer: PreTrainedTokenizerBase | None = None
    logger: logging.Logger = logging.getLogger("chatstream")
    eloc: EasyLocale | None = None
    client_role_wrapper: ClientRoles | None = None

    def __init__(self) -> None:
        """Subclasses written for the original call this; the attributes are set by ChatStream."""

    # -- conversations --------------------------------------------------------------------------------
    def create_chat_prompt(self) -> AbstractChatPrompt:
        """A new ChatPrompt of `chat_prompt_clazz`, with the tokenizer set (as in the original, its
        `build_initial_prompt` is the caller's to run; `new_chat_prompt` does both)."""
        if self.chat_prompt_clazz is None:
            raise ChatRequestError(500, "internal_server_error", "no chat_prompt_clazz was given to ChatStream")
        chat_prompt = self.chat_prompt_clazz()
        if self.tokenizer is not None:
            chat_prompt.set_tokenizer(self.tokenizer)
        return chat_prompt

    def new_chat_prompt(self) -> AbstractChatPrompt:
        """A new conversation: `create_chat_prompt()`, then its `build_initial_prompt`."""
        chat_prompt = self.create_chat_prompt()
        chat_prompt.build_initial_prompt(chat_prompt)
        return chat_prompt

    def conversation_key(self, request: Request) -> str | None:
        """Requests with the same key are served one at a time (None: no serialization)."""
        return None

    # -- the original's generation entry point ------------------------------------------------------------
    def generate(self, chat_prompt: AbstractChatPrompt, chat_generation_finished_callback: Callable[[str], object],
                 request: Request, custom_generation_params: dict[str, Any] | None,
                 message_id: str | None = None) -> AsyncIterator[str]:
        """The reply to `chat_prompt`'s open turn as an async generator of /chat_stream chunks.

        `chat_generation_finished_callback(message)` (sync or async) is called once: "success" after
        the last chunk, "client_disconnected_while_streaming" if the stream is closed or cancelled
        early, "unknown_error_occurred,while chat_generator.generate" if generation fails (the error
        is logged and raised on). The reply is prepared now: a ChatPrompt hook that fails raises
        here, before any response exists.
        """
        generator = self._generator()
        prepared = self._prepare(generator, chat_prompt, message_id, custom_generation_params)
        return self._stream_with_callback(generator.stream(prepared), chat_generation_finished_callback)

    async def _stream_with_callback(self, chunks: AsyncIterator[str],
                                    callback: Callable[[str], object]) -> AsyncIterator[str]:
        reported = False

        async def report(message: str) -> None:
            nonlocal reported
            if reported:
                return
            reported = True
            try:
                await _call(callback, message)
            except Exception as exc:  # noqa: BLE001 - the handler's callback must not break the stream's end
                log_failure_once(self.logger, exc, "the request handler's finish callback raised")

        try:
            async for chunk in chunks:
                yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            await report("client_disconnected_while_streaming")
            raise
        except Exception as exc:
            log_failure_once(self.logger, exc, "generation failed")
            await report("unknown_error_occurred,while chat_generator.generate")
            raise
        finally:
            await _aclose(chunks)
        await report("success")

    def stream_reply(self, chat_prompt: AbstractChatPrompt, message_id: str,
                     generation_params: dict[str, Any] | None, on_close: Callable[[str], None]) -> ChatStreamResponse:
        """The streamed reply for the prompt's open responder turn, in the /chat_stream format
        (prepared now: a failing ChatPrompt hook raises here)."""
        generator = self._generator()
        prepared = self._prepare(generator, chat_prompt, message_id, generation_params)
        return ChatStreamResponse(generator.stream(prepared), on_close, headers={MESSAGE_ID_HEADER: message_id},
                                  abort=lambda: generator.abort(message_id))

    def _prepare(self, generator: ChatReplyGenerator, chat_prompt: AbstractChatPrompt, message_id: str | None,
                 generation_params: dict[str, Any] | None) -> object:
        try:
            return generator.prepare(chat_prompt, {"output_type": "response_text", "message_id": message_id,
                                                   "generation_params": generation_params})
        except Exception as exc:
            log_failure_once(self.logger, exc, "the reply could not be prepared")
            raise

    def _generator(self) -> ChatReplyGenerator:
        if self.chat_generator is None:
            raise ChatRequestError(500, "internal_server_error", "the request handler has no chat_generator: give it "
                                   "to ChatStream(request_handler=...)")
        return self.chat_generator

    # -- turns ------------------------------------------------------------------------------------------------
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

    # -- role promotion (a pass phrase typed into the chat) ----------------------------------------------------
    def verify_user_input_for_role_promotion(self, request: Request, user_input: str | None) -> dict[str, Any]:
        """Grant the browser the role whose pass phrase `user_input` is: `{"is_new_role_granted": bool,
        "new_role": {"client_role_name", "allowed_apis", "enable_dev_tool"} or None}`."""
        roles = self.client_role_wrapper
        name = roles.try_promote(request, user_input) if roles is not None and isinstance(user_input, str) else None
        if name is None:
            return {"is_new_role_granted": False, "new_role": None}
        return {"is_new_role_granted": True, "new_role": roles.describe(name)}  # type: ignore[union-attr]

    def detect_special_command_for_role_promotion(self, request: Request, user_input: str | None,
                                                  streaming_finished_callback: FinishedCallback) -> Response | None:
        """The streamed "New role: ... has been granted" reply if `user_input` is a pass phrase, else None.

        ChatStream already answers pass phrases before a request reaches its handler (without taking
        a run slot), so from `process_request` this finds nothing; it is kept for handlers that call it.
        """
        granted = self.verify_user_input_for_role_promotion(request, user_input)
        if not granted["is_new_role_granted"]:
            return None
        role = granted["new_role"]
        from chatstream.facade.client_roles import promotion_stream_text

        headers = {DEV_TOOL_HEADER: "enabled"} if role.get("enable_dev_tool") else None
        return fixed_text_response(request, promotion_stream_text(role["client_role_name"]),
                                   streaming_finished_callback, headers)

    # -- the original's helpers --------------------------------------------------------------------------------
    @staticmethod
    def get_bool_from_dict(data: Any, key: str) -> bool:
        """`data[key]` if it is a bool; False when it is missing or anything else (e.g. the string "True")."""
        try:
            value = data[key]
        except (KeyError, TypeError, IndexError):
            return False
        return value if isinstance(value, bool) else False

    async def return_internal_server_error_response(self, request: Request, callback: FinishedCallback,
                                                    detail: str) -> JSONResponse:
        """Report "unknown_error_occurred,while processing DETAIL" to `callback(request, message)` and
        answer 500 `{"error": "internal_server_error", "detail": DETAIL}`."""
        await _call(callback, request, f"unknown_error_occurred,while processing {detail}")
        return JSONResponse({"error": "internal_server_error", "detail": detail}, status_code=500)

    # -- what a handler implements --------------------------------------------------------------------------------
    @abstractmethod
    async def process_request(self, request: Request, request_body: bytes,
                              streaming_finished_callback: FinishedCallback) -> Response: ...

    @abstractmethod
    def get_request_handler_type(self) -> str: ...


async def _aclose(chunks: object) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


def __getattr__(name: str) -> Any:
    # The default handler has its own module; these names stay importable from here.
    if name in ("SimpleSessionRequestHandler", "HttpSession", "session_of"):
        from chatstream.facade import session_request_handler

        return getattr(session_request_handler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
