"""`StoreHandle`: the conversation store one `ChatStream` (and its session middleware) uses.

Given a URL (``memory``, ``sqlite:///PATH``, ``redis://HOST:PORT/DB``) the handle opens the store on
first use, or when the app's lifespan calls `open()`, and closes it in `close()`; given an open
`ConversationStore`, it uses that one and leaves closing it to its owner. The store is used from the
event loop only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from chatstream.conversations import ConversationStore, StoreOptions, open_store, parse_store_url, redacted
from chatstream.facade.local_sessions import LocalSessionData
from chatstream.facade.session_locks import TurnLocks

MEMORY_URL = "memory"


class StoreHandle:
    """A store, opened once. `await handle.get()` returns it (opening it the first time);
    `StoreUnavailable` when it cannot be opened (the next call tries again)."""

    def __init__(self, source: str | ConversationStore | None = None, options: StoreOptions | None = None) -> None:
        self.options = options
        self._store: ConversationStore | None = None
        self._opening: asyncio.Future[ConversationStore] | None = None
        self._locks = TurnLocks()
        self.local_sessions = LocalSessionData()  # session-dict entries the store does not keep
        if source is None or isinstance(source, str):
            self.url: str | None = source or MEMORY_URL
            parse_store_url(self.url)  # a bad URL fails now, not at the first request
            self.owned = True
        elif isinstance(source, ConversationStore):
            self.url, self._store, self.owned = None, source, False
        else:
            raise TypeError("conversation_store must be a store URL (memory, sqlite:///PATH, redis://HOST:PORT/DB) "
                            f"or a ConversationStore, got {type(source).__name__}")

    @classmethod
    def of(cls, source: str | ConversationStore | StoreHandle | None) -> StoreHandle:
        return source if isinstance(source, StoreHandle) else cls(source)

    def __repr__(self) -> str:
        return f"StoreHandle({self.describe()})"

    def describe(self) -> str:
        """The store's URL without its password (for logs)."""
        if self.url is not None:
            return redacted(self.url)
        return repr(self._store)

    @property
    def store(self) -> ConversationStore | None:
        """The store once it is open (None before)."""
        return self._store

    async def get(self) -> ConversationStore:
        if self._store is not None:
            return self._store
        assert self.url is not None
        loop = asyncio.get_running_loop()
        if self._opening is None or self._opening.get_loop() is not loop:
            self._opening = asyncio.ensure_future(open_store(self.url, self.options))
        opening = self._opening
        try:
            # shield: a caller that is cancelled does not cancel the opening others wait for
            store = await asyncio.shield(opening)
        except BaseException:
            if opening.done() and self._opening is opening:
                self._opening = None  # failed: the next call tries again
            raise
        self._store = store
        return store

    @asynccontextmanager
    async def exclusive(self, key: str) -> AsyncIterator[None]:
        """One holder of `key` at a time in this process (e.g. while a session's current
        conversation is looked up and, when missing, made)."""
        await self._locks.acquire(key)
        try:
            yield
        finally:
            self._locks.release(key)

    async def open(self) -> ConversationStore:
        """Open now (the app's lifespan does, so an unusable SQLite path fails at start)."""
        return await self.get()

    async def close(self) -> None:
        """Close the store if this handle opened it."""
        store, self._store, self._opening = self._store, None, None
        if store is not None and self.owned:
            await store.close()
        elif store is not None:
            self._store = store  # not ours: it stays usable for its owner
