"""The SQLite backend's schema (version 1) and how rows map to the store's types.

    sessions(id PK, created_at, last_seen_at, current_conversation_id, client_role, generation_params JSON)
    conversations(id PK, session_id, title, system, created_at, updated_at)
        index (session_id, updated_at, id): a session's list, newest first; index (updated_at): TTL purge
    messages(conversation_id FK ON DELETE CASCADE, position, id, role, text, status, finish_reason,
             feedback JSON, stats JSON, created_at, lease_until, tokens BLOB)
        primary key (conversation_id, position); unique (conversation_id, id)

`lease_until` is set only on a `streaming` reply; `tokens` is a `token_codec` blob. The version
lives in ``PRAGMA user_version``; a file written by a newer schema is refused, not guessed at.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from chatstream.conversations import records, token_codec
from chatstream.conversations.models import Message, Session

SCHEMA_VERSION = 1

DDL = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    current_conversation_id TEXT,
    client_role TEXT,
    generation_params TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS sessions_by_last_seen ON sessions(last_seen_at);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    title TEXT NOT NULL,
    system TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_session ON conversations(session_id, updated_at, id);
CREATE INDEX IF NOT EXISTS conversations_by_update ON conversations(updated_at);
CREATE TABLE IF NOT EXISTS messages (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    id TEXT NOT NULL,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    status TEXT NOT NULL,
    finish_reason TEXT,
    feedback TEXT,
    stats TEXT,
    created_at REAL NOT NULL,
    lease_until REAL,
    tokens BLOB,
    PRIMARY KEY (conversation_id, position),
    UNIQUE (conversation_id, id)
);
"""

MESSAGE_COLUMNS = "id, role, text, created_at, status, finish_reason, feedback, stats, lease_until"
SESSION_COLUMNS = "id, created_at, last_seen_at, current_conversation_id, client_role, generation_params"


def create_schema(conn: sqlite3.Connection) -> None:
    """Creates the tables of a new file; refuses a file of a newer schema."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"the conversation store was written by a newer ChatStream "
                                    f"(schema {version}, this one reads {SCHEMA_VERSION})")
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in DDL.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def message_from_row(row: Sequence[object]) -> Message:
    (mid, role, text, created_at, status, finish_reason, feedback, stats) = row[:8]
    return Message(id=mid, role=role, text=text, created_at=created_at, status=status,  # type: ignore[arg-type]
                   finish_reason=finish_reason, feedback=records.feedback_from_json(feedback),  # type: ignore[arg-type]
                   stats=records.stats_from_json(stats))  # type: ignore[arg-type]


def message_row(conversation_id: str, position: int, messages: Sequence[Message],
                lease_until: float | None) -> tuple[object, ...]:
    """The row of `messages[position]`; its tokens are packed against the messages before it."""
    m = messages[position]
    return (conversation_id, position, m.id, m.role, m.text, m.status, m.finish_reason,
            records.feedback_to_json(m.feedback), records.stats_to_json(m.stats), m.created_at,
            lease_until if m.status == "streaming" else None, token_codec.pack_message(messages, position))


INSERT_MESSAGE = ("INSERT OR REPLACE INTO messages (conversation_id, position, id, role, text, status, finish_reason, "
                  "feedback, stats, created_at, lease_until, tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def session_from_row(row: Sequence[object]) -> Session:
    sid, created_at, last_seen_at, current, role, params = row
    return Session(sid, created_at, last_seen_at, current, role, json.loads(params))  # type: ignore[arg-type]
