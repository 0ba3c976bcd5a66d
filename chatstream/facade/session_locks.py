"""One reply per conversation at a time, and a count of what each session keeps waiting.

Two requests for the same conversation would both append to and stream into the same history
and corrupt it. `TurnLocks` serializes them: the second waits until the first reply has ended
(finished, stopped or disconnected), then runs on the updated history, first come first served.
A lock exists only while someone holds or waits for it.

Each waiting request is counted under its owner (the session): `num_waiting(owner)` lets the
facade refuse (429) a session that already keeps `max_waiting_per_session` requests waiting, so one
cookie cannot fill the whole queue. The facade also holds an `Admission` place for every waiter,
so these waits show in /get_load and count against `max_queue_size`.
"""

from __future__ import annotations

import asyncio
from collections import deque


class TurnLocks:
    def __init__(self) -> None:
        self._held: dict[str, deque[asyncio.Future[None]]] = {}  # held key -> its waiters in order
        self._waiting: dict[str, int] = {}  # owner -> its requests waiting for a lock

    def try_acquire(self, key: str | None) -> bool:
        """Take the lock now if it is free (None: no serialization)."""
        if key is None:
            return True
        if key in self._held:
            return False
        self._held[key] = deque()
        return True

    async def acquire(self, key: str | None, owner: str | None = None) -> None:
        """Wait for the lock, counted under `owner` meanwhile. A waiter that is cancelled leaves the
        line; a lock handed to it in the same instant is passed on."""
        if self.try_acquire(key):
            return
        assert key is not None
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._held[key].append(waiter)
        if owner is not None:
            self._waiting[owner] = self._waiting.get(owner, 0) + 1
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(key)
            elif key in self._held and waiter in self._held[key]:
                self._held[key].remove(waiter)
            raise
        finally:
            if owner is not None:
                self._waiting[owner] -= 1
                if self._waiting[owner] == 0:
                    del self._waiting[owner]

    def release(self, key: str | None) -> None:
        """Hand the lock to the oldest waiter, or free it."""
        if key is None or key not in self._held:
            return
        waiters = self._held[key]
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        del self._held[key]

    def num_waiting(self, owner: str | None) -> int:
        """How many requests of `owner` wait for a lock now."""
        return 0 if owner is None else self._waiting.get(owner, 0)

    def __len__(self) -> int:
        return len(self._held)


# The name this class had while there was one lock per session.
SessionLocks = TurnLocks
