"""One conversation, one reply at a time.

Two requests of the same browser session would both append to and stream into the same
ChatPrompt and corrupt its history. `SessionLocks` serializes them: the second waits until the
first reply has ended (finished, stopped or disconnected), then runs on the updated history.
Locks exist only while someone holds or waits for them.
"""

from __future__ import annotations

import asyncio


class SessionLocks:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    async def acquire(self, key: str | None) -> None:
        if key is None:
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            await lock.acquire()
        except BaseException:
            self._forget(key)
            raise

    def release(self, key: str | None) -> None:
        if key is None or key not in self._locks:
            return
        self._locks[key].release()
        self._forget(key)

    def _forget(self, key: str) -> None:
        self._users[key] -= 1
        if self._users[key] == 0:
            del self._users[key], self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)
