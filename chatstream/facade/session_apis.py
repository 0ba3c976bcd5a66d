"""The default APIs besides /chat_stream, as `ChatStream` methods: context, prompt, system prompt,
generation parameters, feedback, reply statistics, load, resource usage, and the one-line app
setup helpers.

Each handler answers JSON in the original's shape (`{"success": ..., "message": ...}`). Invalid
input is a 400 that names the field and its allowed range, never a 500. With the default request
handler the conversation APIs act on the conversation store (`conversation_apis.py`); with the
original's `SimpleSessionRequestHandler` on the ChatPrompt in the session dict; other handlers
keep conversations elsewhere, and these APIs say they are not supported.
"""

from __future__ import annotations

import functools
import sys
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

import psutil
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chatstream.conversations import StoreError
from chatstream.facade import default_routes
from chatstream.facade.chat_stream_response import fixed_text_response
from chatstream.facade.client_roles import promotion_stream_text
from chatstream.facade.conversation_apis import ConversationApis
from chatstream.facade.conversation_handler import ConversationRequestHandler
from chatstream.facade.json_body import JsonBodyError, parse_json
from chatstream.facade.generation_params import (
    GenerationParamError, check_with_engine, merge_params, param_ranges, public_params, validate_overrides)
from chatstream.facade.request_handler import CHAT_PROMPT_KEY, GENERATION_PARAMS_KEY
from chatstream.facade.sessions import bind_session, prepare_session
from chatstream.facade.store_errors import store_error_response

if TYPE_CHECKING:
    import torch
    from starlette.applications import Starlette

    from chatstream.engine.engine_client import EngineClient
    from chatstream.facade.admission import Admission
    from chatstream.facade.client_roles import ClientRoles
    from chatstream.facade.request_handler import AbstractRequestHandler
    from chatstream.facade.store_handle import StoreHandle

GIB = 1024 ** 3
MAX_SYSTEM_PROMPT_CHARS = 20_000
P = ParamSpec("P")


def resource_usage(num_gpus: int | None) -> dict[str, Any]:
    """This process's memory (RSS, of the machine's total) and, when a model made torch load
    them and `num_gpus` is set, each GPU's used and total memory, in GB with 2 decimals."""
    gpus = []
    torch = sys.modules.get("torch")  # only report GPUs when a model made torch load them
    if torch is not None and num_gpus and torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            gpus.append({"index": index, "total_memory": round(total / GIB, 2),
                         "used_memory": round((total - free) / GIB, 2)})
    cpu = {"total_memory": round(psutil.virtual_memory().total / GIB, 2),
           "used_memory": round(psutil.Process().memory_info().rss / GIB, 2)}
    return {"num_gpus": len(gpus), "gpus": gpus, "cpu": cpu}


def _ok(**fields: Any) -> JSONResponse:
    return JSONResponse({"success": True, "message": "success", **fields})


def _fail(message: str, status_code: int = 200, **fields: Any) -> JSONResponse:
    return JSONResponse({"success": False, "message": message, **fields}, status_code=status_code)


async def _json_body(request: Request) -> Any:
    """The body as JSON ({} when empty); a `JsonBodyError` becomes the handler's 400 (`role_checked`)."""
    return parse_json(await request.body() or b"{}")


def role_checked(api_name: str) -> Callable[
        [Callable[Concatenate[SessionApis, Request, P], Awaitable[Response]]],
        Callable[Concatenate[SessionApis, Request, P], Awaitable[Response]]]:
    """The one role check of the default APIs: the handler runs only if the caller's role allows
    `api_name`; otherwise the answer is the 403 of `ClientRoles.verify`."""

    def decorate(handler: Callable[Concatenate[SessionApis, Request, P], Awaitable[Response]]
                 ) -> Callable[Concatenate[SessionApis, Request, P], Awaitable[Response]]:
        @functools.wraps(handler)
        async def checked(self: SessionApis, request: Request, *args: P.args, **kwargs: P.kwargs) -> Response:
            if self.client_roles.enabled:
                await prepare_session(request)  # the session's role is kept in the store
            denied = self.verify_role_for_api(request, api_name)
            if denied is not None:
                return denied
            try:
                return await handler(self, request, *args, **kwargs)
            except JsonBodyError as exc:
                fields = {} if exc.field is None else {"field": exc.field}
                return _fail(str(exc), 400, **fields)

        return checked

    return decorate


class SessionApis:
    """Mixed into `ChatStream`; relies on its `client_roles`, `request_handler`, `chat_generator`,
    `params`, `admission`, `engine`, `name`, `num_gpus` and `device`."""

    client_roles: ClientRoles
    request_handler: AbstractRequestHandler
    conversations: StoreHandle
    chat_generator: Any
    params: dict[str, Any]
    admission: Admission
    engine: EngineClient | None
    name: str
    num_gpus: int | None
    device: torch.device | str | None

    def verify_role_for_api(self, request: Request, api_name: str) -> Response | None:
        return self.client_roles.verify(request, api_name)

    def _session_store(self, request: Request) -> dict[str, Any] | None:
        session = getattr(request.state, "session", None)
        return None if session is None else session.get_session()

    def _not_http_session(self) -> bool:
        return self.request_handler.get_request_handler_type() != "http_session"

    @property
    def _in_store(self) -> ConversationApis | None:
        """The store-backed APIs when the default request handler keeps the conversations."""
        if isinstance(self.request_handler, ConversationRequestHandler):
            return ConversationApis(self)  # type: ignore[arg-type]
        return None

    @role_checked("clear_context")
    async def handle_clear_context_request(self, request: Request, request_body: bytes | None = None,
                                           callback: Callable[..., Any] | None = None) -> Response:
        if self._in_store is not None:
            body = await _json_body(request)
            return await self._in_store.clear_context(request, body if isinstance(body, dict) else None)
        if self._not_http_session():
            return _fail("Not supported on current request_handler type.")
        store = self._session_store(request)
        if store is None:
            return _fail("no context.")
        # As in the original: a session with nothing to clear is cleared successfully too.
        if store.pop(CHAT_PROMPT_KEY, None) is not None:
            request.state.session.save_session()
        return JSONResponse({"success": True, "message": "Context successfully cleared"})

    @role_checked("get_prompt")
    async def handle_get_prompt_request(self, request: Request) -> Response:
        if self._in_store is not None:
            return await self._in_store.get_prompt(request)
        if self._not_http_session():
            return _fail("Not supported on current request_handler type.")
        store = self._session_store(request) or {}
        chat_prompt = store.get(CHAT_PROMPT_KEY)
        if chat_prompt is None:
            return JSONResponse({"success": True, "message": "no prompt", "prompt": None})
        return _ok(prompt=urllib.parse.quote(chat_prompt.create_prompt()))

    @role_checked("set_generation_params")
    async def handle_set_generation_params_request(self, request: Request) -> Response:
        if self._session_store(request) is None:
            return _fail("no session", status_code=400, generation_params=None)
        try:
            overrides = validate_overrides(await _json_body(request))
        except GenerationParamError as exc:
            return _fail(str(exc), status_code=400, field=exc.field)
        try:
            session = await bind_session(request, self.conversations, create=True)
            assert session is not None
            stored = {**session.data.get(GENERATION_PARAMS_KEY, {}), **overrides}
            check_with_engine(self.params, stored)
            session.data[GENERATION_PARAMS_KEY] = stored
            await session.save()
        except GenerationParamError as exc:
            return _fail(str(exc), status_code=400, field=exc.field)
        except StoreError as exc:
            return store_error_response(exc)
        return _ok(generation_params=public_params(merge_params(self.params, stored)))

    @role_checked("get_generation_params")
    async def handle_get_generation_params_request(self, request: Request) -> Response:
        if self._session_store(request) is None:
            return _fail("no session", generation_params=None)
        try:
            session = await bind_session(request, self.conversations, create=False)
        except StoreError as exc:
            return store_error_response(exc)
        stored = None if session is None else session.data.get(GENERATION_PARAMS_KEY)
        return _ok(generation_params=public_params(merge_params(self.params, stored)),
                   ranges=param_ranges())

    @role_checked("set_system_prompt")
    async def handle_set_system_prompt_request(self, request: Request) -> Response:
        """`{"system_prompt": str}` becomes the system text of the session's conversation (created
        if there is none yet); an empty or blank text restores the ChatPrompt preset's own."""
        if self._in_store is None and self._not_http_session():
            return _fail("Not supported on current request_handler type.")
        body = await _json_body(request)
        text = body.get("system_prompt") if isinstance(body, dict) else None
        if not isinstance(text, str) or len(text) > MAX_SYSTEM_PROMPT_CHARS:
            return _fail(f"system_prompt must be a string of at most {MAX_SYSTEM_PROMPT_CHARS} characters", 400,
                         field="system_prompt")
        if self._in_store is not None:
            assert isinstance(body, dict)
            return await self._in_store.set_system_prompt(request, body, text)
        store = self._session_store(request)
        if store is None:
            return _fail("no session", 400)
        chat_prompt = store.get(CHAT_PROMPT_KEY)
        if chat_prompt is None:
            chat_prompt = store[CHAT_PROMPT_KEY] = self.request_handler.new_chat_prompt()
        chat_prompt.set_system(text if text.strip() else self.request_handler.new_chat_prompt().get_system())
        request.state.session.save_session()
        # The text given, not the preset's own when restoring it: a server's system prompt is not
        # shown to its users (see client_roles.DENIED_BY_DEFAULT).
        return _ok(system_prompt=text if text.strip() else "")

    @role_checked("get_reply_stats")
    async def handle_get_reply_stats_request(self, request: Request) -> Response:
        """`?message_id=ID`: a reply of this session, once generated: its final text and what it cost
        (`finished` is false while it is still being generated; ask again)."""
        if self._in_store is not None:
            return await self._in_store.get_reply_stats(request)
        if self._not_http_session():
            return _fail("Not supported on current request_handler type.")
        message_id = request.query_params.get("message_id")
        if not message_id:
            return _fail("message_id is required", 400, field="message_id")
        replies = getattr(self.chat_generator, "replies", None)
        if replies is not None and replies.is_running(message_id):
            return _ok(message_id=message_id, finished=False)
        record = None if replies is None else replies.find(message_id)
        chat_prompt = (self._session_store(request) or {}).get(CHAT_PROMPT_KEY)
        if record is None or chat_prompt is None or chat_prompt.find_chat_content_by_message_id(message_id) is None:
            return _fail(f"unknown message_id {message_id!r}", 404, field="message_id")
        return _ok(message_id=message_id, finished=True, text=record.text, stats=record.stats())

    @role_checked("set_feedback")
    async def handle_set_feedback_request(self, request: Request, opts: dict[str, Any] | None = None) -> Response:
        if self._in_store is None and self._not_http_session():
            return _fail("Not supported on current request_handler type.")
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _fail("the request body must be a JSON object {is_like, message_id, form_data}", 400)
        message_id, is_like = body.get("message_id"), body.get("is_like")
        if not isinstance(message_id, str) or not message_id:
            return _fail("message_id is None", 400, field="message_id")
        if is_like is not None and not isinstance(is_like, bool):
            return _fail("is_like must be a JSON boolean", 400, field="is_like")
        if self._in_store is not None:
            return await self._in_store.set_feedback(request, body, message_id, is_like,
                                                     (opts or {}).get("on_feedback_received"))
        store = self._session_store(request) or {}
        chat_prompt = store.get(CHAT_PROMPT_KEY)
        if chat_prompt is None:
            return _fail("No chat prompt", 400)
        target = chat_prompt.find_chat_content_by_message_id(message_id)
        if target is None:
            return _fail(f"unknown message_id {message_id!r}", 404, field="message_id")
        feedback = {
            "is_like": is_like, "form_data": body.get("form_data"),
            "prompt": chat_prompt.create_prompt({"to_message_id": message_id}),
            "target_message_id": message_id, "target_message": target.get_message(),
            "generation_params": merge_params(self.params, store.get(GENERATION_PARAMS_KEY)),
        }
        on_feedback = (opts or {}).get("on_feedback_received")
        if on_feedback is not None:
            on_feedback(feedback)
        return _ok(target_message_id=message_id)

    def get_load(self) -> dict[str, Any]:
        running, waiting = self.admission.num_running, self.admission.num_waiting
        return {"name": self.name, "processing": running, "waiting": waiting,
                "_num_of_next_queue": 0, "_num_of_request_queue": waiting,
                "max_processing": self.admission.max_running, "max_waiting": self.admission.max_waiting}

    @role_checked("get_load")
    async def handle_get_load_request(self, request: Request) -> Response:
        return _ok(chatstream_workers=[self.get_load()])

    def get_resource_usage(self) -> dict[str, Any]:
        return {"name": self.name, **resource_usage(self.num_gpus)}

    @role_checked("get_resource_usage")
    async def handle_get_resource_usage_request(self, request: Request) -> Response:
        return _ok(memory_usage=[self.get_resource_usage()])

    def client_roles_promotion_response(self, request: Request, role: str) -> Response:
        """The reply to a pass phrase typed into the chat: a short stream, no model call."""
        headers = {"X-ChatStream-API-DevTool-Enabled": "enabled"} if self.client_roles.dev_tool_enabled(
            request) else None
        return fixed_text_response(request, promotion_stream_text(role), lambda *_: None, headers)

    # -- app setup (the implementations live in chatstream.facade.default_routes) -------------------
    def append_apis(self, app: Starlette, opts: dict[str, Any] | None = None) -> None:
        default_routes.append_apis(self, app, opts or {})

    def append_middlewares(self, app: Starlette, opts: dict[str, Any] | None = None) -> None:
        default_routes.append_middlewares(self, app, opts)

    async def index(self, request: Request, response: Response | None = None,
                    opts: dict[str, Any] | None = None) -> Response:
        opts = opts or {}
        return default_routes.web_page(self, request, "webui_index", opts.get("ui_init_params"), opts.get("locale"))

    async def js(self, request: Request, response: Response | None = None) -> Response:
        return default_routes.web_page(self, request, "webui_js", None)
