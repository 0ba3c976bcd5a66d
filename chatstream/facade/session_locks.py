"""One reply per conversation at a time, and a count of what each session keeps waiting.

Two requests for the same conversation would both append to and stream into the same history
and corrupt it. `TurnLocks` serializes them: the second waits until the first reply has ended
(finished, stopped or disconnected), then runs on the updated history, first come first served.
A lock exists only while someone holds or waits for it.

Each waiting request is counted under its owner (the session) from the moment it joins a line:
`num_waiting(owner)` lets the facade refuse (429) a session that already keeps
`max_waiting_per_session` requests waiting, so one cookie cannot fill the whole queue. Joining is
synchronous, so requests that arrive together see each other's places.
"""

from __future__ import annotations

import asyncio
from collections import deque


class TurnLocks:
    def __init__(self) -> None:
        self._held: dict[str, deque[asyncio.Future[None]]] = {}  # held key -> its waiters in order
        self._waiting: dict[str, int] = {}  # owner -> its requests in a line

    def try_acquire(self, key: str | None) -> bool:
        """Take the lock now if it is free (None: no serialization)."""
        if key is None:
            return True
        if key in self._held:
            return False
        self._held[key] = deque()
        return True

    async def acquire(self, key: str | None, owner: str | None = None) -> None:
        """Wait for the lock, counted under `owner` meanwhile."""
        waiter = self.join(key, owner)
        try:
            await self.wait(waiter)
        except BaseException:
            self.leave(key, waiter, owner)
            raise
        self.leave(key, waiter, owner)

    def join(self, key: str | None, owner: str | None = None) -> asyncio.Future[None] | None:
        """Take the lock now (None), or a place in its line, counted under `owner` until `leave`."""
        if self.try_acquire(key):
            return None
        assert key is not None
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._held[key].append(waiter)
        if owner is not None:
            self._waiting[owner] = self._waiting.get(owner, 0) + 1
        return waiter

    @staticmethod
    async def wait(waiter: asyncio.Future[None] | None) -> None:
        """Wait until the lock is handed to this place."""
        if waiter is not None:
            await asyncio.shield(waiter)

    def leave(self, key: str | None, waiter: asyncio.Future[None] | None, owner: str | None = None) -> None:
        """End a place in line (call it exactly once per `join` that gave one): it no longer counts;
        if it did not get the lock it leaves the line, if it got it just now the lock stays held by
        the caller only when the caller goes on (`waiter.done()`), else it is passed on."""
        if waiter is None:
            return
        if owner is not None:
            self._waiting[owner] -= 1
            if self._waiting[owner] == 0:
                del self._waiting[owner]
        if not waiter.done():
            waiter.cancel()
            line = self._held.get(key or "")
            if line is not None and waiter in line:
                line.remove(waiter)

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
        """How many requests of `owner` wait in a line now."""
        return 0 if owner is None else self._waiting.get(owner, 0)

    def __len__(self) -> int:
        return len(self._held)


# The name this class had while there was one lock per session.
SessionLocks = TurnLocks
