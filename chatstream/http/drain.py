"""Graceful shutdown: SIGTERM drains the server instead of cutting streams mid-body.

uvicorn's own SIGTERM handling closes the listening socket at once (a load balancer's health
check then sees "connection refused", not a clear "going away") and cancels every request still
running after its grace period, so a stream stops mid-body with no final chunk. Here:

1. The first SIGTERM (or SIGINT) starts the drain: `Drain.draining` turns true. The server keeps
   accepting connections; `DrainGuard` answers every new request 503 (`shutting_down`, with
   `Connection: close`) and `/health` answers 503 `{"status": "draining"}`.
2. Requests already running go on: answers are finished, streams run to their end, for at most
   `shutdown_timeout` seconds.
3. Then every stream still running is cut (`StreamCutoff.cut`): its generation stops and it ends
   with its protocol's error (the /chat_stream `<::ERROR::>` segment, an OpenAI error event).
4. Once no request runs (or a short grace after the cut), uvicorn's own shutdown runs: it closes
   the connections and the app's lifespan stops the engine. A second signal exits at once.

`DrainingServer` is the uvicorn `Server` that does this; `DrainGuard` the pure ASGI middleware
that refuses new requests and counts the running ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from chatstream.facade.stream_cutoff import SCOPE_KEY, StreamCutoff

logger = logging.getLogger("chatstream")

DEFAULT_SHUTDOWN_TIMEOUT_SEC = 30.0
CUT_GRACE_SEC = 3.0  # after the cut: time for the final chunks to reach the clients
SHUTDOWN_REASON = "the server is shutting down"
OPEN_PATHS = frozenset({"/health"})  # answered while draining (with the draining status)


class Drain:
    """The shutdown state of one app: whether it drains, which requests run, the stream cutoff."""

    def __init__(self, shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT_SEC) -> None:
        if shutdown_timeout < 0:
            raise ValueError(f"shutdown_timeout must be >= 0, got {shutdown_timeout}")
        self.shutdown_timeout = shutdown_timeout
        self.draining = False
        self.cutoff = StreamCutoff()
        self.num_running = 0

    async def run(self, poll_sec: float = 0.05) -> None:
        """Drain: refuse new requests, let running ones finish until the timeout, then cut the
        streams and wait (briefly) for them to end."""
        self.draining = True
        logger.info("draining: %d request(s) running; new requests get 503 (at most %g s)",
                    self.num_running, self.shutdown_timeout)
        deadline = time.monotonic() + self.shutdown_timeout
        while self.num_running and time.monotonic() < deadline:
            await asyncio.sleep(poll_sec)
        if self.num_running:
            logger.warning("shutdown timeout: cutting %d running request(s)", self.num_running)
            self.cutoff.cut(SHUTDOWN_REASON)
            deadline = time.monotonic() + CUT_GRACE_SEC
            while self.num_running and time.monotonic() < deadline:
                await asyncio.sleep(poll_sec)
        logger.info("drained")


class DrainGuard:
    """Pure ASGI: puts the drain's `StreamCutoff` in every HTTP scope, counts running requests,
    and answers new ones 503 while draining (`/health` still answers, with its draining status)."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[SCOPE_KEY] = self.drain.cutoff
        if scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            await _refuse(send)
            return
        self.drain.num_running += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.num_running -= 1


async def _refuse(send: Send) -> None:
    body = json.dumps({"error": "shutting_down", "detail": f"{SHUTDOWN_REASON}; retry on another instance"}).encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), (b"retry-after", b"5")]})
    await send({"type": "http.response.body", "body": body})


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first SIGTERM/SIGINT drains `drain` before uvicorn's own shutdown."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain
        self._drain_requested = False
        self._drain_task: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_requested or not self.started:
            super().handle_exit(sig, frame)  # a second signal, or none served yet: exit now
            return
        self._captured_signals.append(sig)  # re-raised after shutdown, as uvicorn does
        self._drain_requested = True  # picked up by on_tick, on the event loop

    async def on_tick(self, counter: int) -> bool:
        if self._drain_requested and self._drain_task is None:
            self._drain_task = asyncio.ensure_future(self.drain.run())
        if self._drain_task is not None and self._drain_task.done():
            return True
        return await super().on_tick(counter)
