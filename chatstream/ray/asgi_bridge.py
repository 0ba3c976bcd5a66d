"""Calling an ASGI app in this process with a request that arrived over Ray: the replica side.

A replica runs the whole `chatstream serve` app (`create_app`); the ingress hands it each request
as a `ProxiedRequest` (plain data, so Ray can pickle it) and gets the response back as a stream of
parts: one `ResponseStart` (status and headers), then the body's chunks as they are sent. Why not
httpx's ASGI transport: it collects the whole body before returning, which would turn every
streamed reply into one late chunk. When the caller stops reading (the ingress's client left, or
the ingress cancelled), the app's `receive()` answers `http.disconnect`, the same signal uvicorn
gives, so the facade's one cancellation path (abort the engine request, free its blocks) runs.

`Lifespan` drives the app's lifespan protocol, which opens the store and starts loading the model.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message


@dataclass(frozen=True)
class ProxiedRequest:
    """One HTTP request as the ingress received it; `headers` as (lower-case name, value) pairs."""

    method: str
    path: str
    query_string: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    client: tuple[str, int] | None = None

    def scope(self) -> dict[str, Any]:
        return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                "method": self.method, "scheme": "http", "path": self.path, "raw_path": self.path.encode(),
                "root_path": "", "query_string": self.query_string, "client": self.client,
                "server": ("replica", 0),
                "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in self.headers]}


@dataclass(frozen=True)
class ResponseStart:
    """The response's status and headers, (name, value) pairs as the app sent them."""

    status: int
    headers: tuple[tuple[str, str], ...] = field(default=())

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key.lower() == name), None)


async def call_app(app: ASGIApp, request: ProxiedRequest) -> AsyncIterator[ResponseStart | bytes]:
    """Runs `app` on `request`; yields the `ResponseStart`, then each non-empty body chunk. Closing
    the iterator early disconnects the request inside the app and waits for the app to end."""
    sent: asyncio.Queue[Message | None] = asyncio.Queue()
    disconnected = asyncio.Event()
    body_sent = False

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        await sent.put(message)

    async def run() -> None:
        try:
            await app(request.scope(), receive, send)
        finally:
            await sent.put(None)

    task = asyncio.ensure_future(run())
    try:
        while True:
            message = await sent.get()
            if message is None:
                break
            if message["type"] == "http.response.start":
                headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ()))
                yield ResponseStart(message["status"], headers)
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    yield bytes(message["body"])
                if not message.get("more_body", False):
                    break
    finally:
        disconnected.set()
        with contextlib.suppress(Exception):
            # The app ends its reply on the disconnect (the facade aborts the engine request).
            await asyncio.wait_for(asyncio.shield(task), timeout=10)
        if not task.done():
            task.cancel()
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


class Lifespan:
    """Starts and stops an ASGI app's lifespan (the store opens, the model starts loading)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._incoming: asyncio.Queue[Message] = asyncio.Queue()
        self._outgoing: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Future[None] | None = None

    async def start(self) -> None:
        async def send(message: Message) -> None:
            await self._outgoing.put(message)

        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._task = asyncio.ensure_future(self._app(scope, self._incoming.get, send))
        await self._incoming.put({"type": "lifespan.startup"})
        reply = await self._outgoing.get()
        if reply["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the app did not start: {reply.get('message', reply['type'])}")

    async def stop(self) -> None:
        if self._task is None or self._task.done():
            return
        await self._incoming.put({"type": "lifespan.shutdown"})
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._outgoing.get(), timeout=30)
