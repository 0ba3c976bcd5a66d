"""Admission control for chat generations: N run at once, exactly Q more wait, the rest are refused.

`Admission` is pure asyncio and needs no worker task: a request that finds a free slot runs at
once; otherwise it waits in a FIFO of at most `max_waiting` futures; when that is full it is
refused with `QueueFull` (the facade answers 429). A finished generation hands its slot straight
to the oldest waiter, so the order is first come, first served, bursts included. The generations
that hold slots all run in the engine's batch; the limit exists so a server keeps latency bounded
and says "busy" early instead of piling up work.
"""

from __future__ import annotations

import asyncio
from collections import deque


class QueueFull(Exception):
    """Every run slot and every waiting place is taken."""


class Admission:
    """Counts running generations and queues the next ones, for one event loop at a time."""

    def __init__(self, max_running: int, max_waiting: int) -> None:
        if max_running < 1:
            raise ValueError(f"num_of_concurrent_executions must be >= 1, got {max_running}")
        if max_waiting < 0:
            raise ValueError(f"max_queue_size must be >= 0, got {max_waiting}")
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.num_running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def num_waiting(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a free run slot now if there is one and nobody is waiting for it."""
        if self.num_running < self.max_running and not self._waiters:
            self.num_running += 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a run slot, waiting in line if needed; raises `QueueFull` when the line is full.

        If the waiting caller is cancelled (its client went away), it leaves the line, and a slot
        that was handed to it in the same instant is passed on.
        """
        if self.try_acquire():
            return
        if len(self._waiters) >= self.max_waiting:
            raise QueueFull()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived just as we gave up: hand it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back: to the oldest waiter if there is one, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves over; num_running is unchanged
                return
        self.num_running -= 1
