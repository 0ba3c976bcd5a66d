"""Admission control for chat generations: N run at once, exactly Q more wait, the rest are refused.

`Admission` is pure asyncio and needs no worker task: a request that finds a free slot runs at
once; otherwise it waits in a FIFO of at most `max_waiting` futures; when that is full it is
refused with `QueueFull` (the facade answers 429). A finished generation hands its slot straight
to the oldest waiter, so the order is first come, first served, bursts included. The generations
that hold slots all run in the engine's batch; the limit exists so a server keeps latency bounded
and says "busy" early instead of piling up work.

A request may also wait before it asks for a slot: a /chat_stream turn waits until the previous
reply of its conversation ended (`TurnLocks`). Such a request holds a waiting *place*
(`hold_place`): it counts in `num_waiting` and against `max_waiting` like a request in line, so
every wait is visible (/get_load, /metrics) and bounded. When its turn comes, `join_line(held=True)`
turns the place into a place in line, or `drop_place` gives it back.
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
        self._num_places = 0  # waiting places held by requests that are not in line yet
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def num_waiting(self) -> int:
        """Requests waiting: in line for a slot, or holding a place while they wait for their turn."""
        return len(self._waiters) + self._num_places

    def try_acquire(self) -> bool:
        """Take a free run slot now if there is one and nobody is in line for it."""
        if self.num_running < self.max_running and not self._waiters:
            self.num_running += 1
            return True
        return False

    def hold_place(self) -> None:
        """Reserve a waiting place (QueueFull when none is left); give it back with `drop_place`
        or turn it into a place in line with `join_line(held=True)`."""
        if self.num_waiting >= self.max_waiting:
            raise QueueFull()
        self._num_places += 1

    def drop_place(self) -> None:
        self._num_places -= 1

    def join_line(self, held: bool = False) -> asyncio.Future[None] | None:
        """Take a free slot now (None), or a place in line: the future resolves when a slot is
        handed over; await it with `wait`. Raises QueueFull when the line is full, unless the
        caller brings a place it held (`held=True`, which is used up either way)."""
        if held:
            self.drop_place()
        if self.try_acquire():
            return None
        if not held and self.num_waiting >= self.max_waiting:
            raise QueueFull()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    async def wait(self, waiter: asyncio.Future[None] | None) -> None:
        """Wait for the slot `join_line` promised. If the caller is cancelled (its client went
        away), it leaves the line, and a slot that was handed to it in the same instant is passed on."""
        if waiter is None:
            return
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived just as we gave up: hand it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    async def acquire(self) -> None:
        """Take a run slot, waiting in line if needed; raises `QueueFull` when the line is full."""
        await self.wait(self.join_line())

    def release(self) -> None:
        """Give a slot back: to the oldest waiter if there is one, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves over; num_running is unchanged
                return
        self.num_running -= 1
