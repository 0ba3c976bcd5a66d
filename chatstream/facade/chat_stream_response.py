"""The streaming response of `/chat_stream`, whose end is reported exactly once, whatever happens.

A plain `StreamingResponse` runs its body generator only if the client is still there, and a
client that leaves mid-stream may leave the generator suspended, to be finalized whenever the
garbage collector gets to it. Generation holds a run slot, a session lock and an engine request,
so `ChatStreamResponse` reports the end through one synchronous `on_close(message)` call, made
exactly once, with one of the original's callback messages:

- "success": the whole reply was sent;
- "client_disconnected_while_streaming": the client left after the first byte;
- "client_disconnected_before_streaming": the body never started;
- "unknown_error_occurred,while generating response": generation raised (logged; the stream ends).

`on_close` is synchronous on purpose: it may run inside a cancelled scope, where nothing can be
awaited.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

SUCCESS = "success"
DISCONNECTED_WHILE_STREAMING = "client_disconnected_while_streaming"
DISCONNECTED_BEFORE_STREAMING = "client_disconnected_before_streaming"
ERROR_WHILE_GENERATING = "unknown_error_occurred,while generating response"

logger = logging.getLogger("chatstream")


class ChatStreamResponse(StreamingResponse):
    def __init__(
        self,
        chunks: AsyncIterator[str],
        on_close: Callable[[str], None],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._chunks = chunks
        self._on_close = on_close
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
        try:
            async for chunk in self._chunks:
                yield chunk
            message = SUCCESS
        except Exception:  # noqa: BLE001 - the headers are sent; all we can do is end the stream
            logger.exception("generation failed while streaming")
            message = ERROR_WHILE_GENERATING
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


async def _aclose(chunks: Any) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()
