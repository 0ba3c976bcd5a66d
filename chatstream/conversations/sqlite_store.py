"""The `sqlite:///PATH` backend: one file, WAL mode, one transaction per operation.

Why sqlite3 in one dedicated thread rather than aiosqlite: a turn is several statements that must
commit together. Here each operation is one function that runs whole, BEGIN IMMEDIATE to COMMIT,
in the connection's own thread (one `run_in_executor` hop), so coroutines can't interleave inside
a transaction and no asyncio lock is needed; aiosqlite runs the same sqlite3 in a thread too, but
one hop per statement, and would need such a lock. A cancelled caller doesn't cut a transaction:
it completes or rolls back in the thread.

Durability: WAL with ``synchronous=NORMAL`` (default) keeps every committed transaction through a
process crash or ``kill -9`` and never corrupts the file; an OS crash or power loss may lose the
last commits. ``?synchronous=full`` fsyncs each commit. Several processes may share one file:
writers take the lock up front (BEGIN IMMEDIATE) and wait up to `BUSY_TIMEOUT_S` for it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from chatstream.conversations import token_codec
from chatstream.conversations.backend import Plan, ReplyUpdate, StorageBackend
from chatstream.conversations.changes import StoredConversation
from chatstream.conversations.errors import StoreUnavailable
from chatstream.conversations.models import Conversation, ConversationSummary, Session, StoreSize
from chatstream.conversations.options import StoreOptions
from chatstream.conversations.pagination import Position
from chatstream.conversations.sqlite_schema import (
    INSERT_MESSAGE,
    MESSAGE_COLUMNS,
    SESSION_COLUMNS,
    create_schema,
    message_from_row,
    message_row,
    session_from_row,
)

BUSY_TIMEOUT_S = 10.0
PURGE_EVERY_S = 60.0
T = TypeVar("T")


class SqliteBackend(StorageBackend):
    def __init__(self, path: Path, options: StoreOptions, synchronous: str) -> None:
        super().__init__(options)
        self.path = path
        self._synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conversation-store-sqlite")
        self._conn: sqlite3.Connection | None = None  # used only in the executor's thread
        self._last_purge = 0.0
        self._closed = False

    @classmethod
    async def open(cls, path: Path, options: StoreOptions, synchronous: str = "normal") -> "SqliteBackend":
        backend = cls(path, options, synchronous)
        try:
            await backend._run(backend._connect)
            await backend.purge_expired(time.time())
        except BaseException:
            await backend.close()
            raise
        return backend

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    # -- the connection's thread -------------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreUnavailable("the conversation store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except (sqlite3.OperationalError, sqlite3.DatabaseError, OSError) as exc:
            if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError)):
                raise  # a bug, not an unavailable store
            raise StoreUnavailable(f"sqlite conversation store {self.path}: {exc}") from exc

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"WAL mode is not available here (journal mode {mode})")
            conn.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
            conn.execute("PRAGMA foreign_keys=ON")
            create_schema(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    def _in_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> Callable[[], T]:
        return lambda: self._transaction(fn)

    def _cutoff(self, ttl: float | None, now: float) -> float:
        return float("-inf") if ttl is None else now - ttl

    # -- sessions --------------------------------------------------------------------------------------------------

    def _read_session(self, conn: sqlite3.Connection, session_id: str, now: float) -> Session | None:
        row = conn.execute(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ? AND last_seen_at >= ?",
                           (session_id, self._cutoff(self.options.session_ttl_s, now))).fetchone()
        return None if row is None else session_from_row(row)

    async def create_session(self, session_id: str, now: float) -> Session:
        def create(conn: sqlite3.Connection) -> Session:
            session = self._read_session(conn, session_id, now)
            if session is None:
                conn.execute("INSERT OR REPLACE INTO sessions (id, created_at, last_seen_at) VALUES (?, ?, ?)",
                             (session_id, now, now))
            else:
                conn.execute("UPDATE sessions SET last_seen_at = ? WHERE id = ?", (now, session_id))
            result = self._read_session(conn, session_id, now)
            assert result is not None
            return result

        await self._maybe_purge(now)
        return await self._run(self._in_transaction(create))

    async def get_session(self, session_id: str, now: float, *, touch: bool) -> Session | None:
        def get(conn: sqlite3.Connection) -> Session | None:
            session = self._read_session(conn, session_id, now)
            if session is not None and touch:
                conn.execute("UPDATE sessions SET last_seen_at = ? WHERE id = ?", (now, session_id))
                session = self._read_session(conn, session_id, now)
            return session

        return await self._run(self._in_transaction(get))

    async def update_session(self, session_id: str, now: float, fields: dict[str, Any]) -> Session | None:
        def update(conn: sqlite3.Connection) -> Session | None:
            if self._read_session(conn, session_id, now) is None:
                return None
            values = {"last_seen_at": now, **fields}
            if "generation_params" in values:
                values["generation_params"] = json.dumps(values["generation_params"])
            assignments = ", ".join(f"{name} = ?" for name in values)  # names come from the store, not users
            conn.execute(f"UPDATE sessions SET {assignments} WHERE id = ?", (*values.values(), session_id))
            return self._read_session(conn, session_id, now)

        return await self._run(self._in_transaction(update))

    # -- conversations ---------------------------------------------------------------------------------------------

    def _read(self, conn: sqlite3.Connection, session_id: str, conversation_id: str, now: float,
              include_tokens: bool) -> StoredConversation | None:
        row = conn.execute(
            "SELECT id, session_id, title, system, created_at, updated_at FROM conversations "
            "WHERE id = ? AND session_id = ? AND updated_at >= ?",
            (conversation_id, session_id, self._cutoff(self.options.conversation_ttl_s, now))).fetchone()
        if row is None:
            return None
        tokens_column = ", tokens" if include_tokens else ""
        rows = conn.execute(f"SELECT {MESSAGE_COLUMNS}{tokens_column} FROM messages WHERE conversation_id = ? "
                            "ORDER BY position", (conversation_id,)).fetchall()
        messages = [message_from_row(r) for r in rows]
        if include_tokens:
            unpacked = token_codec.unpack_all([r[9] for r in rows])
            messages = [m if t is None else replace(m, tokens=t) for m, t in zip(messages, unpacked, strict=True)]
        lease = rows[-1][8] if rows and rows[-1][4] == "streaming" else None
        cid, sid, title, system, created_at, updated_at = row
        return StoredConversation(Conversation(cid, sid, title, system, created_at, updated_at, tuple(messages)), lease)

    def _store_messages(self, conn: sqlite3.Connection, conversation: Conversation, indices: list[int],
                        lease_until: float | None) -> None:
        conn.executemany(INSERT_MESSAGE, [message_row(conversation.id, i, conversation.messages, lease_until)
                                          for i in indices])

    async def insert(self, conversation: Conversation) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            c = conversation
            conn.execute("INSERT INTO conversations (id, session_id, title, system, created_at, updated_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (c.id, c.session_id, c.title, c.system, c.created_at,
                                                       c.updated_at))
            self._store_messages(conn, c, list(range(len(c.messages))), None)

        await self._maybe_purge(conversation.updated_at)
        await self._run(self._in_transaction(insert))

    async def load(self, session_id: str, conversation_id: str, now: float,
                   include_tokens: bool) -> StoredConversation | None:
        return await self._run(self._in_transaction(
            lambda conn: self._read(conn, session_id, conversation_id, now, include_tokens)))

    async def write(self, session_id: str, conversation_id: str, now: float, plan: Plan) -> Conversation | None:
        def write(conn: sqlite3.Connection) -> Conversation | None:
            stored = self._read(conn, session_id, conversation_id, now, include_tokens=True)
            if stored is None:
                return None
            change = plan(stored, now)
            result = change.apply(stored.conversation)
            conn.execute("UPDATE conversations SET title = ?, system = ?, updated_at = ? WHERE id = ?",
                         (result.title, result.system, result.updated_at, conversation_id))
            if change.keep < len(stored.conversation.messages):
                conn.execute("DELETE FROM messages WHERE conversation_id = ? AND position >= ?",
                             (conversation_id, change.keep))
            self._store_messages(conn, result, change.written_indices(),
                                 change.result_lease(result, stored.lease_until))
            return result

        return await self._run(self._in_transaction(write))

    async def delete(self, session_id: str, conversation_id: str, now: float) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute("DELETE FROM conversations WHERE id = ? AND session_id = ? AND updated_at >= ?",
                                  (conversation_id, session_id,
                                   self._cutoff(self.options.conversation_ttl_s, now)))
            return cursor.rowcount > 0

        return await self._run(self._in_transaction(delete))

    async def list(self, session_id: str, now: float, limit: int, after: Position | None) -> list[ConversationSummary]:
        def select() -> list[ConversationSummary]:
            assert self._conn is not None
            before_at, before_id = after if after is not None else (float("inf"), "")
            rows = self._conn.execute(
                "SELECT c.id, c.title, c.created_at, c.updated_at, "
                "(SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) FROM conversations c "
                "WHERE c.session_id = ? AND c.updated_at >= ? "
                "AND (c.updated_at < ? OR (c.updated_at = ? AND c.id < ?)) "
                "ORDER BY c.updated_at DESC, c.id DESC LIMIT ?",
                (session_id, self._cutoff(self.options.conversation_ttl_s, now), before_at, before_at,
                 before_id, limit + 1)).fetchall()
            return [ConversationSummary(*row) for row in rows]

        return await self._run(select)

    async def set_reply_text(self, session_id: str, conversation_id: str, reply_id: str, text: str,
                             now: float, lease_until: float) -> ReplyUpdate:
        def update(conn: sqlite3.Connection) -> ReplyUpdate:
            owned = conn.execute("SELECT 1 FROM conversations WHERE id = ? AND session_id = ? AND updated_at >= ?",
                                 (conversation_id, session_id,
                                  self._cutoff(self.options.conversation_ttl_s, now))).fetchone()
            if owned is None:
                return "no_conversation"
            cursor = conn.execute("UPDATE messages SET text = ?, lease_until = ? WHERE conversation_id = ? "
                                  "AND id = ? AND status = 'streaming'", (text, lease_until, conversation_id, reply_id))
            return "ok" if cursor.rowcount else "closed"

        return await self._run(self._in_transaction(update))

    # -- upkeep ----------------------------------------------------------------------------------------------------

    async def size(self, now: float) -> StoreSize:
        def count(conn: sqlite3.Connection) -> StoreSize:
            conversation_cutoff = self._cutoff(self.options.conversation_ttl_s, now)
            (sessions,) = conn.execute("SELECT COUNT(*) FROM sessions WHERE last_seen_at >= ?",
                                       (self._cutoff(self.options.session_ttl_s, now),)).fetchone()
            (conversations,) = conn.execute("SELECT COUNT(*) FROM conversations WHERE updated_at >= ?",
                                            (conversation_cutoff,)).fetchone()
            (messages,) = conn.execute("SELECT COUNT(*) FROM messages m JOIN conversations c "
                                       "ON c.id = m.conversation_id WHERE c.updated_at >= ?",
                                       (conversation_cutoff,)).fetchone()
            return StoreSize(sessions, conversations, messages)

        return await self._run(self._in_transaction(count))

    async def purge_expired(self, now: float) -> None:
        def purge(conn: sqlite3.Connection) -> None:
            self._last_purge = now
            if self.options.session_ttl_s is not None:
                conn.execute("DELETE FROM sessions WHERE last_seen_at < ?", (now - self.options.session_ttl_s,))
            if self.options.conversation_ttl_s is not None:
                conn.execute("DELETE FROM conversations WHERE updated_at < ?", (now - self.options.conversation_ttl_s,))

        await self._run(self._in_transaction(purge))

    async def _maybe_purge(self, now: float) -> None:
        if now - self._last_purge >= PURGE_EVERY_S:
            await self.purge_expired(now)

    async def ping(self) -> None:
        await self._run(lambda: self._conn.execute("SELECT 1").fetchone() if self._conn else None)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)
