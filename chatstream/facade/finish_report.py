"""The end of a /chat_stream request, reported exactly once, whatever the request handler does.

A request that got a run slot holds it, and its conversation's lock, until its end is reported.
The request handler is told to report it: `process_request(request, request_body,
streaming_finished_callback)` gets a `FinishReport` as that callback. Handlers are user code
written to the original's contract, so the report accepts every way the original was called
(`callback(message)` or `callback(request, message)`, awaited or not) and only its first call
counts.

A handler that never reports (it forgot, it returned its own response, its stream raised)
must not keep the slot: ChatStream sends its response through a `GuardedResponse`, which
reports when that response is over (sent, failed, or its client gone) if nobody did before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from chatstream.facade.chat_logging import log_failure_once
from chatstream.facade.chat_stream_response import (
    DISCONNECTED_BEFORE_STREAMING, DISCONNECTED_WHILE_STREAMING, ERROR_WHILE_GENERATING, SUCCESS)


class _Reported:
    """What a `FinishReport` call returns: awaiting it is a no-op, and not awaiting it is fine too."""

    def __await__(self) -> Generator[None, None, None]:
        return iter(())


class FinishReport:
    """Reports a request's end once: `on_finish(message)` runs on the first call only.

    Callable as `report(message)` or `report(request, message)`; returns an awaitable, so the
    original's `await streaming_finished_callback(request, message)` works as well.
    """

    def __init__(self, on_finish: Callable[[str], None]) -> None:
        self._on_finish = on_finish
        self.message: str | None = None

    @property
    def done(self) -> bool:
        return self.message is not None

    def __call__(self, *args: Any) -> _Reported:
        message = args[-1] if args else None
        if not isinstance(message, str):
            message = f"unknown_error_occurred,while finishing (the callback got {args!r})"
        if self.message is None:
            self.message = message
            self._on_finish(message)
        return _Reported()


class GuardedResponse(Response):
    """Sends a request handler's response and makes sure the request's end is reported.

    If the handler did not report by the time its response is over, this reports what happened:
    "success" (the response was sent), a disconnect, or an error. An error while sending is
    logged once; before the response started the client gets a 500 JSON error, after it the
    response is ended properly (the handler's stream could not go on).
    """

    def __init__(self, inner: Response, report: FinishReport, logger: logging.Logger, handler_name: str,
                 warned: set[str] | None = None) -> None:
        # Not Response.__init__: this response has no body of its own. It shares the inner one's
        # status and header list, so headers a caller adds to it reach the client.
        self.inner = inner
        self.report = report
        self.logger = logger
        self.handler_name = handler_name
        self.warned = warned if warned is not None else set()  # handlers already warned about (once each)
        self.status_code = inner.status_code
        self.raw_headers = inner.raw_headers
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = completed = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, completed
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                completed = True
            await send(message)

        outcome: str | None = None
        try:
            await self.inner(scope, receive, tracking_send)
            if completed:
                outcome = SUCCESS
            if self.background is not None:  # tasks a FastAPI route added to the response it returned
                await self.background()
        except (ClientDisconnect, OSError):
            pass  # the client left: reported below
        except Exception as exc:
            log_failure_once(self.logger, exc, f"the response of {self.handler_name} failed")
            outcome = ERROR_WHILE_GENERATING
            await self._end_after_error(send, started, completed)
        finally:
            try:
                # A stream the response left suspended (its client left) is closed now, so a
                # handler's own generator runs its `finally` (and may report) before we look.
                await _aclose(getattr(self.inner, "body_iterator", None), self.logger)
            finally:
                if not self.report.done:
                    if outcome is None:
                        outcome = DISCONNECTED_WHILE_STREAMING if started else DISCONNECTED_BEFORE_STREAMING
                    level = logging.DEBUG if self.handler_name in self.warned else logging.WARNING
                    self.warned.add(self.handler_name)
                    self.logger.log(level, "%s did not call streaming_finished_callback; reported %r for it",
                                    self.handler_name, outcome)
                    self.report(outcome)

    @staticmethod
    async def _end_after_error(send: Send, started: bool, completed: bool) -> None:
        try:
            if not started:
                error = JSONResponse({"error": "internal_server_error", "detail": "the request handler's response "
                                      "failed before it started (see the server log)"}, status_code=500)
                await send({"type": "http.response.start", "status": 500, "headers": error.raw_headers})
                await send({"type": "http.response.body", "body": error.body, "more_body": False})
            elif not completed:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (OSError, RuntimeError, ClientDisconnect):
            pass  # the client is gone, or the server closed the response itself


async def _aclose(iterator: object, logger: logging.Logger) -> None:
    close = getattr(iterator, "aclose", None)
    if close is None:
        return
    try:
        await close()
    except Exception as exc:  # noqa: BLE001 - a handler's generator that fails to close must not escape
        log_failure_once(logger, exc, "closing the request handler's stream failed")
