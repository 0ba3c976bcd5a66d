"""The /chat_stream request path of `ChatStream`: role and body checks, the conversation's turn,
a run slot (or 429; both waits through `TurnGate`), the request handler, and the end of the
request reported exactly once.

Mixed into `ChatStream` (like `SessionApis`). The request handler and the callbacks are user code:
whatever they raise, return or forget, the slot and the lock come back (`FinishReport`,
`GuardedResponse`), the client gets an error it can read, the traceback is logged once, and the
next request is served.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from chatstream.facade.admission import Admission, QueueFull
from chatstream.facade.chat_logging import label_for, log_failure_once, request_label
from chatstream.facade.chat_output import ChatReplyGenerator
from chatstream.facade.chat_stream_response import DISCONNECTED_BEFORE_STREAMING
from chatstream.facade.client_roles import ClientRoles
from chatstream.facade.conversation_handler import ConversationRequestHandler, _json_object
from chatstream.facade.disconnect import ClientGone, disconnect_watch, unless_disconnected
from chatstream.facade.finish_report import FinishReport, GuardedResponse
from chatstream.facade.offload import Offload
from chatstream.facade.request_handler import AbstractRequestHandler, ChatRequest, ChatRequestError, parse_chat_request
from chatstream.facade.sessions import StoreSession, prepare_session
from chatstream.facade.turn_gate import TurnGate

# The finish callback of a /chat_stream request: (request, the original's callback message); sync or async.
FinishCallback = Callable[[Request, str], object]


class ChatStreamRequests:
    """Relies on `ChatStream`'s `client_roles`, `request_handler`, `chat_generator`, `admission`,
    `logger`, `too_many_request_as_http_error`, `retry_after_sec`, `is_ready` and
    `client_roles_promotion_response`."""

    client_roles: ClientRoles
    request_handler: AbstractRequestHandler
    chat_generator: ChatReplyGenerator | None
    admission: Admission
    logger: logging.Logger
    too_many_request_as_http_error: bool
    retry_after_sec: int
    turn_gate: TurnGate
    offload: Offload
    _callback_tasks: set[asyncio.Task[object]]
    _warned_handlers: set[str]

    if TYPE_CHECKING:  # provided by ChatStream and SessionApis

        @property
        def is_ready(self) -> bool: ...

        def client_roles_promotion_response(self, request: Request, role: str) -> Response: ...

    async def handle_chat_stream_request(
        self, request: Request, request_body: bytes | None = None,
        callback: FinishCallback | None = None,
    ) -> Response:
        if self.client_roles.enabled:
            await prepare_session(request)  # the session's role is kept in the store
        denied = self.client_roles.verify(request, "chat_stream")
        if denied is not None:
            return denied
        handler_name = type(self.request_handler).__name__
        if request_body is None:
            request_body = await request.body()
        try:  # a big body is parsed and checked on the tokenizing pool, off the event loop
            body, chat_request = await self.offload.run(len(request_body), _parse, request_body)
        except ChatRequestError as exc:
            return exc.response()
        if not chat_request.regenerate:
            role = self.client_roles.try_promote(request, chat_request.user_input or "")
            if role is not None:
                await self._keep_promotion(request)
                return self.client_roles_promotion_response(request, role)
        if not self.is_ready:
            return self._unavailable()
        try:
            key, owner = await self._turn_target(request, body)
        except ChatRequestError as exc:
            return exc.response()
        except Exception as exc:  # noqa: BLE001 - a user's handler must not take the server down
            log_failure_once(self.logger, exc, f"{handler_name}.conversation_key failed")
            return _internal_error(f"{handler_name}.conversation_key failed (see the server log)")
        request_label.set(label_for(owner))
        try:
            entered = await self.turn_gate.enter(request, key, owner)
        except QueueFull:
            self.logger.info("queue full: %d running, %d waiting", self.admission.num_running,
                             self.admission.num_waiting)
            return self._too_many_requests()
        if not entered:  # the client left while waiting; it holds nothing and opened no turn
            self._notify(callback, request, DISCONNECTED_BEFORE_STREAMING)
            return Response(status_code=499)
        report = FinishReport(lambda message: self._finished(request, key, callback, message))
        self.logger.debug("admitted: %d running, %d waiting", self.admission.num_running, self.admission.num_waiting)
        response = await self._run_handler(request, request_body, report, handler_name)
        if report.done:
            return response
        return GuardedResponse(response, report, self.logger, handler_name, self._warned_handlers)

    async def _run_handler(self, request: Request, request_body: bytes, report: FinishReport,
                           handler_name: str) -> Response:
        """The handler's response; any failure is reported (the slot goes back) and answered here."""

        async def process() -> object:
            result = self.request_handler.process_request(request, request_body, report)
            return await result if inspect.isawaitable(result) else result

        try:
            response = await unless_disconnected(process(), disconnect_watch(request))
        except ChatRequestError as exc:
            report(exc.callback_message)
            return exc.response()
        except (ClientGone, ClientDisconnect):
            report(DISCONNECTED_BEFORE_STREAMING)
            return Response(status_code=499)
        except Exception as exc:  # noqa: BLE001 - a user's handler must not take the server down
            log_failure_once(self.logger, exc, f"{handler_name}.process_request failed")
            report("unknown_error_occurred,while process_request")
            return _internal_error(f"{handler_name}.process_request failed (see the server log)")
        if not isinstance(response, Response):
            self.logger.error("%s.process_request returned %s, not a Response", handler_name,
                              type(response).__name__)
            await _discard(response)
            report("unknown_error_occurred,while process_request")
            return _internal_error(f"{handler_name}.process_request returned {type(response).__name__}, "
                                   "not a Response")
        return response

    async def _turn_target(self, request: Request, body: dict[str, object] | None) -> tuple[str | None, str | None]:
        """(what the request waits its turn on, whose waiting it counts as): the conversation and
        its session for the store-backed handler, the handler's `conversation_key` for others."""
        handler = self.request_handler
        if isinstance(handler, ConversationRequestHandler):
            target = await handler.resolve_target(request, body)
            return target.lock_key, target.session_id
        key = handler.conversation_key(request)
        return key, key

    async def _keep_promotion(self, request: Request) -> None:
        """A role granted by a pass phrase is kept in the session, made now if needed."""
        session = getattr(request.state, "session", None)
        if isinstance(session, StoreSession):
            from chatstream.conversations import StoreError

            try:
                await session.ensure()
                await session.flush()
            except StoreError as exc:
                self.logger.warning("the granted role could not be stored: %s", exc)

    def _finished(self, request: Request, key: str | None, callback: FinishCallback | None, message: str) -> None:
        self.turn_gate.leave(key)
        self._notify(callback, request, message)

    def _notify(self, callback: FinishCallback | None, request: Request, message: str) -> None:
        self.logger.debug("finished: %s", message)
        if callback is None:
            return
        try:
            result = callback(request, message)
        except Exception as exc:  # noqa: BLE001 - a user callback must not break the server
            log_failure_once(self.logger, exc, "the finish callback raised")
            return
        if inspect.isawaitable(result):  # an async callback: run it, report its failure
            task = asyncio.ensure_future(result)
            self._callback_tasks.add(task)
            task.add_done_callback(self._callback_done)

    def _callback_done(self, task: asyncio.Future[object]) -> None:
        self._callback_tasks.discard(task)  # type: ignore[arg-type]
        if not task.cancelled() and task.exception() is not None:
            log_failure_once(self.logger, task.exception(), "the finish callback raised")  # type: ignore[arg-type]

    def _unavailable(self) -> JSONResponse:
        detail = ("no model: this ChatStream was built without one; call chat_stream.configure(model=...)"
                  if self.chat_generator is None else "the engine is not running")
        return JSONResponse({"error": "engine_unavailable", "detail": detail}, status_code=503)

    def _too_many_requests(self) -> JSONResponse:
        status = 429 if self.too_many_request_as_http_error else 200
        headers = {"Retry-After": str(self.retry_after_sec)} if status == 429 else None
        return JSONResponse({"error": "too_many_requests",
                             "detail": f"{self.admission.max_running} requests are running and "
                                       f"{self.admission.max_waiting} are waiting; retry later"},
                            status_code=status, headers=headers)


def _parse(request_body: bytes) -> tuple[dict[str, Any] | None, ChatRequest]:
    body = _json_object(request_body)
    return body, parse_chat_request(body if body is not None else request_body)


def _internal_error(detail: str) -> JSONResponse:
    return JSONResponse({"error": "internal_server_error", "detail": detail}, status_code=500)


async def _discard(value: object) -> None:
    """Close what a handler returned instead of a Response, if it holds anything (a stream)."""
    close = getattr(value, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # noqa: BLE001 - it was wrong already; the error is logged by the caller
            pass
