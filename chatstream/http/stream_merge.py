"""Merging several async streams into one, as their items arrive.

An OpenAI request with n choices (or several prompts) runs one engine request per choice; the
answer interleaves their deltas in arrival order, each tagged with its choice's index. Closing
the merged stream early closes every stream under it, which for engine streams aborts their
requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from typing import TypeVar

T = TypeVar("T")


async def merge(streams: Sequence[AsyncIterator[T]]) -> AsyncGenerator[tuple[int, T], None]:
    """The items of all `streams` as they arrive, tagged with their stream's index.

    Closing the merge early closes every stream (for engine streams, that aborts the requests).
    """
    # (index, item, error); item None with no error: that stream ended.
    queue: asyncio.Queue[tuple[int, T | None, Exception | None]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[T]) -> None:
        error = None
        try:
            async with aclosing(stream):  # type: ignore[type-var]
                async for item in stream:
                    queue.put_nowait((index, item, None))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, who raises it
            error = exc
        finally:
            queue.put_nowait((index, None, error))

    tasks = [asyncio.ensure_future(pump(i, stream)) for i, stream in enumerate(streams)]
    try:
        num_open = len(tasks)
        while num_open:
            index, item, error = await queue.get()
            if error is not None:
                raise error
            if item is None:
                num_open -= 1
            else:
                yield index, item
    finally:
        for task in tasks:  # cancelling a pump closes its stream
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
