"""The streaming response of `/chat_stream`, whose end is reported exactly once, whatever happens.

A plain `StreamingResponse` runs its body generator only if the client is still there, and a
client that leaves mid-stream may leave the generator suspended, to be finalized whenever the
garbage collector gets to it. Generation holds a run slot, a session lock and an engine request,
so `ChatStreamResponse` reports the end through one synchronous `on_close(message)` call, made
exactly once, with one of the original's callback messages:

- "success": the whole reply was sent;
- "client_disconnected_while_streaming": the client left after the first byte;
- "client_disconnected_before_streaming": the body never started;
- "unknown_error_occurred,while generating response": generation raised (logged once; the stream
  ends, for /chat_stream with a last chunk that adds `STREAM_ERROR_NOTICE` to the reply so far:
  `on_error=error_chunk`).

`on_close` is synchronous on purpose: it may run inside a cancelled scope, where nothing can be
awaited.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from chatstream.facade.chat_logging import log_failure_once
from chatstream.facade.chat_output import DEFAULT_FINISH_TOKEN

SUCCESS = "success"
DISCONNECTED_WHILE_STREAMING = "client_disconnected_while_streaming"
DISCONNECTED_BEFORE_STREAMING = "client_disconnected_before_streaming"
ERROR_WHILE_GENERATING = "unknown_error_occurred,while generating response"
# The last chunk of a reply that failed after it started: the headers (200) are gone, so the
# client learns it in the text, after the part of the reply it already has.
STREAM_ERROR_NOTICE = "[error: the reply was cut short by a server error]"

logger = logging.getLogger("chatstream")


class ChatStreamResponse(StreamingResponse):
    def __init__(
        self,
        chunks: AsyncIterator[str],
        on_close: Callable[[str], None],
        headers: Mapping[str, str] | None = None,
        on_error: Callable[[str], str] | None = None,
    ) -> None:
        self._chunks = chunks
        self._on_close = on_close
        self._on_error = on_error  # the last chunk after a failure, from the last one sent (e.g. `error_chunk`)
        self._started = False
        self._closed = False
        super().__init__(self._body(), media_type="text/plain", headers=headers)

    def _close(self, message: str) -> None:
        if not self._closed:
            self._closed = True
            self._on_close(message)

    async def _body(self) -> AsyncIterator[str]:
        self._started = True
        message = DISCONNECTED_WHILE_STREAMING
        last = ""
        try:
            async for chunk in self._chunks:
                last = chunk
                yield chunk
            message = SUCCESS
        except Exception as exc:  # noqa: BLE001 - the headers are sent: end the stream, saying why
            log_failure_once(logger, exc, "generation failed while streaming")
            message = ERROR_WHILE_GENERATING
            if self._on_error is not None:
                yield self._on_error(last)
        finally:
            self._close(message)
            await _aclose(self._chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except (ClientDisconnect, OSError):
            pass  # the client left; the finally below reports it
        finally:
            self._close(DISCONNECTED_WHILE_STREAMING if self._started else DISCONNECTED_BEFORE_STREAMING)
            # A disconnect can leave the body suspended at a `yield`; close it now, so what it
            # holds (engine streams) ends at once, not whenever the garbage collector finds it.
            await self.body_iterator.aclose()  # type: ignore[attr-defined]


def error_chunk(last_chunk: str) -> str:
    """The chunk that ends a failed reply: the reply so far, then `STREAM_ERROR_NOTICE`."""
    text = last_chunk.removesuffix(DEFAULT_FINISH_TOKEN)
    return f"{text}\n\n{STREAM_ERROR_NOTICE}{DEFAULT_FINISH_TOKEN}" if text else STREAM_ERROR_NOTICE + DEFAULT_FINISH_TOKEN


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
