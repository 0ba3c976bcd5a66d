"""`EngineReplica`: one Ray Serve deployment replica holding one whole `chatstream serve` app.

Each replica is the app `create_app` builds (its own engine, admission line, metrics and
session middleware, the shared conversation store), called in-process by the ingress through
`call_app`. So a replica answers exactly as `chatstream serve` does: its `/chat_stream`,
`/conversations`, `/v1`, `/get_load` and `/metrics` are the ones of one server, and its
`--num-concurrent` / `--max-queue` line is its own.

The app's lifespan (open the store, load the model in a worker thread) starts on the first call
to any method; the ingress's probe calls `status` at once. Ray Serve calls `check_health`: a dead
engine raises there, so Ray Serve replaces the replica; a model still loading does not.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from chatstream.ray.asgi_bridge import Lifespan, ProxiedRequest, ResponseStart, call_app

if TYPE_CHECKING:
    from chatstream.http.app import ServerConfig
    from chatstream.http.server_state import ServerState


class EngineReplica:
    """The deployment's class (`build_app` wraps it with `serve.deployment`).

    `num_threads`: torch's intra-op threads in this process (the replica's share of the cores on
    a CPU; None: torch's default)."""

    def __init__(self, config: ServerConfig, name: str, num_threads: int | None = None) -> None:
        if num_threads is not None:
            import torch

            torch.set_num_threads(num_threads)
        from chatstream.http.app import create_app

        self.name = name
        self.app = create_app(config)
        self._lifespan = Lifespan(self.app)
        self._started: asyncio.Future[None] | None = None

    async def _start(self) -> None:
        if self._started is None:
            self._started = asyncio.ensure_future(self._lifespan.start())
        await asyncio.shield(self._started)

    @property
    def _state(self) -> ServerState:
        return self.app.state.server

    async def handle(self, request: ProxiedRequest) -> AsyncIterator[ResponseStart | bytes]:
        """The app's response to `request`: a `ResponseStart`, then the body's chunks."""
        await self._start()
        async for part in call_app(self.app, request):
            yield part

    async def status(self) -> dict[str, object]:
        """What the ingress's probe reads: this replica's name, state, process and line."""
        await self._start()
        state = self._state
        chat_stream = state.chat_stream
        load = chat_stream.get_load() if chat_stream is not None else None
        return {"replica": self.name, "status": state.status, "pid": os.getpid(), "load": load,
                "reason": None if state.load_error is None else str(state.load_error)}

    async def check_health(self) -> None:
        """Ray Serve's health check: a dead engine fails it (Ray Serve then restarts this replica)."""
        await self._start()
        state = self._state
        if state.status == "dead":
            engine = state.chat_stream.engine if state.chat_stream is not None else None
            raise RuntimeError(f"replica {self.name}: the engine died: {getattr(engine, 'dead_reason', None)}")

    async def __del__(self) -> None:
        await self._lifespan.stop()
