"""Fixtures of the conversation store tests: every test that takes `backend` (or `store`) runs on
memory, SQLite (a file in the test's temp dir) and Redis (the session's redis-server, a key prefix
of its own per test).

`backend.open(options)` opens another handle on the same data (another connection for SQLite and
Redis, as a second process would have; the same store for memory, whose data live in one object).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatstream.conversations import ConversationStore, StoreOptions, open_store

BACKENDS = ("memory", "sqlite", "redis")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Backend:
    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self.stores: list[ConversationStore] = []

    async def open(self, options: StoreOptions | None = None) -> ConversationStore:
        if self.kind == "memory" and self.stores and options is None:
            return self.stores[0]
        store = await open_store(self.url, options)
        self.stores.append(store)
        return store

    async def close_all(self) -> None:
        for store in self.stores:
            await store.close()
        self.stores.clear()


def backend_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "memory":
        return "memory"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'conversations.sqlite3'}"
    server = request.getfixturevalue("redis_server")
    return f"{server.url()}?prefix=t{uuid.uuid4().hex[:16]}"


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    handle = Backend(request.param, backend_url(request.param, tmp_path, request))
    yield handle
    await handle.close_all()


@pytest.fixture(params=("sqlite", "redis"))
async def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """The backends several processes can share."""
    handle = Backend(request.param, backend_url(request.param, tmp_path, request))
    yield handle
    await handle.close_all()


@pytest.fixture
async def store(backend: Backend) -> ConversationStore:
    return await backend.open()
