"""`RequestLimits`: a pure ASGI middleware that bounds what reading one request body may cost.

- **Size.** A body larger than `max_request_bytes` is refused with 413 and a JSON error: at once
  when its `Content-Length` says so (the body is never read), else as soon as the bytes read
  pass the limit (chunked uploads).
- **Time.** The whole body must arrive within `body_timeout` seconds of the request's start; a
  client that trickles it in gets 408, so slow uploads cannot hold connections and handlers.
- **Clients that leave.** A client that disconnects while its body is read raises Starlette's
  `ClientDisconnect` inside the handler; nobody is left to answer, so it ends the request quietly
  (one debug line) instead of an error traceback in the log.

Only the body is watched: once it has been read, `receive` is passed through untouched (the
disconnect watches of streaming answers keep working). `chatstream serve` adds it with
`--max-request-bytes`; `append_middlewares` adds it for embedded apps (opts `max_request_bytes`,
`body_timeout`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
DEFAULT_BODY_TIMEOUT_SEC = 30.0

logger = logging.getLogger("chatstream")


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


class RequestLimits:
    def __init__(self, app: ASGIApp, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 body_timeout: float = DEFAULT_BODY_TIMEOUT_SEC) -> None:
        if max_request_bytes < 1:
            raise ValueError(f"max_request_bytes must be >= 1, got {max_request_bytes}")
        if body_timeout <= 0:
            raise ValueError(f"body_timeout must be > 0, got {body_timeout}")
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is None:
            await _error(send, 400, "bad_request", "the Content-Length header is not a number")
            return
        if length > self.max_request_bytes:
            await self._too_large(send)
            return
        deadline = time.monotonic() + self.body_timeout
        num_bytes, body_done, started = 0, False, False

        async def limited_receive() -> Message:
            nonlocal num_bytes, body_done
            if body_done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise _TooSlow() from None
            if message["type"] == "http.request":
                num_bytes += len(message.get("body", b""))
                if num_bytes > self.max_request_bytes:
                    raise _TooLarge()
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except Exception as exc:
            # Middleware built on BaseHTTPMiddleware (the session middleware) hands errors on
            # inside an ExceptionGroup.
            reason = _find(exc, (_TooLarge, _TooSlow, ClientDisconnect))
            if reason is None:
                raise
            if isinstance(reason, ClientDisconnect):
                logger.debug("the client left while its request body was being read: %s", scope.get("path"))
            elif started:
                pass  # a handler that answered before reading all of its body
            elif isinstance(reason, _TooLarge):
                await self._too_large(send)
            else:
                await _error(send, 408, "request_timeout",
                             f"the request body did not arrive within {self.body_timeout:g} s")

    async def _too_large(self, send: Send) -> None:
        await _error(send, 413, "request_too_large",
                     f"the request body is larger than {self.max_request_bytes} bytes (the server's limit)")


def _find(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """`exc` if it is one of `kinds`, else the first such exception inside it (exception groups)."""
    if isinstance(exc, kinds):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _find(inner, kinds)
        if found is not None:
            return found
    return None


def _content_length(scope: Scope) -> int | None:
    """The declared body length (0 when none is given); None when the header is not a number."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() and len(value) < 20 else None
    return 0


async def _error(send: Send, status: int, error: str, detail: str) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
