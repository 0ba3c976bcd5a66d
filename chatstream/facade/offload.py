"""`Offload`: CPU-heavy request work (tokenizing, rendering a chat template) runs on a small thread
pool, not on the event loop.

The event loop serves every client; a big prompt tokenized there (a 2 MB text takes over a
second) stalls all of them, `/health` included. Work on inputs up to `inline_chars` characters
stays inline (a thread hop costs more than it saves); larger inputs go to the pool. HF's fast
tokenizers release the GIL while they encode, so the loop keeps answering meanwhile. The pool is
small (`max_workers`) so that concurrent big prompts queue for it rather than starve the engine
thread of CPU; it belongs to one `ChatStream` and stops with it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

DEFAULT_INLINE_CHARS = 16 * 1024
DEFAULT_MAX_WORKERS = 2


class Offload:
    def __init__(self, max_workers: int = DEFAULT_MAX_WORKERS, inline_chars: int = DEFAULT_INLINE_CHARS) -> None:
        self.inline_chars = inline_chars
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="chatstream-tokenize")

    async def run(self, size: int, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)`: inline when `size` (characters of input) is small, else on the pool."""
        if size <= self.inline_chars:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
