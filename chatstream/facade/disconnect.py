"""Noticing that an HTTP client went away while its request waits (for a run slot, for a
non-streamed answer).

Once a request's body has been read, the only message left on its receive channel is
`http.disconnect`, so awaiting it is a reliable watch that costs nothing while the client stays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.requests import Request

T = TypeVar("T")
DisconnectWatch = Callable[[], Awaitable[object]]


class ClientGone(Exception):
    """The client went away before its answer was ready."""


def disconnect_watch(request: Request) -> DisconnectWatch:
    """A watch for `request` (its body must have been read already)."""

    async def wait() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return wait


async def unless_disconnected(awaitable: Awaitable[T], watch: DisconnectWatch) -> T:
    """Await `awaitable` unless the client leaves first: then cancel it and raise `ClientGone`."""
    work = asyncio.ensure_future(awaitable)
    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not work.done():
            work.cancel()  # engine streams close (aborting their requests); a waiter leaves the line
        await asyncio.gather(work, watcher, return_exceptions=True)
    if work.cancelled():
        raise ClientGone()
    return work.result()
