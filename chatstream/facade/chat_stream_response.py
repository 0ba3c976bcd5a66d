"""The streaming response of `/chat_stream` (and of the OpenAI API's streams), whose end is
reported exactly once, whatever happens, and which ends with an error its clients recognise when
the reply cannot be finished.

A plain `StreamingResponse` runs its body generator only if the client is still there, and a
client that leaves mid-stream may leave the generator suspended, to be finalized whenever the
garbage collector gets to it. Generation holds a run slot, a session lock and an engine request,
so `ChatStreamResponse` reports the end through one synchronous `on_close(message)` call, made
exactly once, with one of the original's callback messages:

- "success": the whole reply was sent;
- "client_disconnected_while_streaming": the client left after the first byte;
- "client_disconnected_before_streaming": the body never started;
- "unknown_error_occurred,while generating response": generation raised, or the stream was cut.

A reply that cannot be finished ends with one last chunk made by `error_chunk(last_chunk,
reason)`: by default the /chat_stream error segment (`chat_output.error_segment`: the reply so
far, `<::ERROR::>`, the reason, `<::EOS::>`); the OpenAI routes pass an error event. That
happens when generation raises (the engine died, the request failed in the engine) and when the
stream is cut (`cut(reason)`, by the server's `StreamCutoff` at shutdown; `abort` then stops the
generation so the cut takes effect at once).

`on_close` is synchronous on purpose: it may run inside a cancelled scope, where nothing can be
awaited.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from chatstream.facade.chat_logging import log_failure_once
from chatstream.facade.chat_output import DEFAULT_FINISH_TOKEN, error_segment
from chatstream.facade.stream_cutoff import cutoff_of

SUCCESS = "success"
DISCONNECTED_WHILE_STREAMING = "client_disconnected_while_streaming"
DISCONNECTED_BEFORE_STREAMING = "client_disconnected_before_streaming"
ERROR_WHILE_GENERATING = "unknown_error_occurred,while generating response"

logger = logging.getLogger("chatstream")

# (the last chunk sent or None, why the reply ends) -> the final chunk
ErrorChunk = Callable[[str | None, str], str]


def is_engine_failure(exc: BaseException) -> bool:
    """The engine died, or this request failed in it. (Looked up lazily: mock replies never load
    the engine, nor torch.)"""
    engine = sys.modules.get("chatstream.engine.async_engine")
    return engine is not None and isinstance(exc, (engine.EngineDeadError, engine.RequestFailedError))


def reply_error_text(exc: BaseException) -> str:
    """What a client is told when generation raised: the engine's own words for engine failures
    (they say nothing about other users), a pointer to the log for anything else."""
    if is_engine_failure(exc):
        return str(exc)
    return f"the reply failed ({type(exc).__name__}); see the server log"


class ChatStreamResponse(StreamingResponse):
    def __init__(
        self,
        chunks: AsyncIterator[str],
        on_close: Callable[[str], None],
        headers: Mapping[str, str] | None = None,
        *,
        media_type: str = "text/plain",
        abort: Callable[[], None] | None = None,
        error_chunk: ErrorChunk = error_segment,
    ) -> None:
        self._chunks = chunks
        self._on_close = on_close
        self._abort = abort
        self._error_chunk = error_chunk
        self._started = False
        self._closed = False
        self._cut_reason: str | None = None
        super().__init__(self._body(), media_type=media_type, headers=headers)

    def _close(self, message: str) -> None:
        if not self._closed:
            self._closed = True
            self._on_close(message)

    def cut(self, reason: str) -> None:
        """End the stream early with an error chunk saying `reason` (idempotent)."""
        if self._cut_reason is None and not self._closed:
            self._cut_reason = reason
            if self._abort is not None:
                self._abort()

    async def _body(self) -> AsyncIterator[str]:
        self._started = True
        message = DISCONNECTED_WHILE_STREAMING
        last: str | None = None
        try:
            async for chunk in self._chunks:
                if self._cut_reason is not None:
                    break
                last = chunk
                yield chunk
            if self._cut_reason is None:
                message = SUCCESS
            else:
                logger.warning("a reply was cut: %s", self._cut_reason)
                message = ERROR_WHILE_GENERATING
                yield self._error_chunk(last, self._cut_reason)
        except Exception as exc:  # noqa: BLE001 - the headers are sent; all we can do is end the stream
            if is_engine_failure(exc):
                logger.error("generation failed while streaming: %s", exc)
            else:
                log_failure_once(logger, exc, "generation failed while streaming")
            message = ERROR_WHILE_GENERATING
            yield self._error_chunk(last, reply_error_text(exc))
        finally:
            self._close(message)
            await _aclose(self._chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cutoff = cutoff_of(scope)
        if cutoff is not None:
            cutoff.register(self)
        try:
            await super().__call__(scope, receive, send)
        except (ClientDisconnect, OSError):
            pass  # the client left; the finally below reports it
        finally:
            if cutoff is not None:
                cutoff.unregister(self)
            self._close(DISCONNECTED_WHILE_STREAMING if self._started else DISCONNECTED_BEFORE_STREAMING)
            # A disconnect can leave the body suspended at a `yield`; close it now, so what it
            # holds (engine streams) ends at once, not whenever the garbage collector finds it.
            await self.body_iterator.aclose()  # type: ignore[attr-defined]


def fixed_text_response(
    request: Request, text: str, on_end: Callable[..., object], headers: Mapping[str, str] | None = None,
    eos_token: str = DEFAULT_FINISH_TOKEN, finish_message: str = "success",
) -> StreamingResponse:
    """A short text streamed one character at a time in the /chat_stream format (e.g. "New role:
    ... has been granted"); `on_end(request, finish_message)` (awaited if it returns an
    awaitable) once the last chunk went out. No model is involved."""

    async def chunks() -> AsyncIterator[str]:
        for end in range(1, len(text) + 1):
            yield text[:end] + eos_token
        result = on_end(request, finish_message)
        if inspect.isawaitable(result):
            await result

    return StreamingResponse(chunks(), media_type="text/plain", headers=dict(headers) if headers else None)


async def _aclose(chunks: Any) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()
