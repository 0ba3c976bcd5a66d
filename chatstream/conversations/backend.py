"""`StorageBackend`: the few atomic primitives a conversation backend implements.

`ConversationStore` (store.py) checks arguments and decides every rule; a backend only stores and
loads, and makes each primitive atomic: no other writer, in this process or another, sees or
interleaves with half of it. Arguments reaching a backend are already validated. Storage errors
(connection refused, database locked or unreadable) leave as `StoreUnavailable`.

Expiry: a conversation not updated for `conversation_ttl_s`, and a session not seen for
`session_ttl_s`, are gone for every primitive (as if deleted), whether or not the backend has
purged them yet.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Literal

from chatstream.conversations.changes import Change, StoredConversation
from chatstream.conversations.models import Conversation, ConversationSummary, Session, StoreSize
from chatstream.conversations.options import StoreOptions
from chatstream.conversations.pagination import Position

ReplyUpdate = Literal["ok", "no_conversation", "closed"]
Plan = Callable[[StoredConversation, float], Change]


class StorageBackend(ABC):
    def __init__(self, options: StoreOptions) -> None:
        self.options = options

    def conversation_expired(self, updated_at: float, now: float) -> bool:
        ttl = self.options.conversation_ttl_s
        return ttl is not None and updated_at < now - ttl

    def session_expired(self, last_seen_at: float, now: float) -> bool:
        ttl = self.options.session_ttl_s
        return ttl is not None and last_seen_at < now - ttl

    @abstractmethod
    def describe(self) -> str:
        """The backend and where it stores, without secrets (for logs)."""

    # -- sessions --------------------------------------------------------------------------------------------------

    @abstractmethod
    async def create_session(self, session_id: str, now: float) -> Session:
        """Creates the session, or touches and returns it when it exists."""

    @abstractmethod
    async def get_session(self, session_id: str, now: float, *, touch: bool) -> Session | None: ...

    @abstractmethod
    async def update_session(self, session_id: str, now: float, fields: dict[str, Any]) -> Session | None:
        """Sets `fields` (names of `Session` fields) and touches; None when the session is gone."""

    # -- conversations ---------------------------------------------------------------------------------------------

    @abstractmethod
    async def insert(self, conversation: Conversation) -> None:
        """Stores a new conversation (its id is fresh) with its messages."""

    @abstractmethod
    async def load(self, session_id: str, conversation_id: str, now: float,
                   include_tokens: bool) -> StoredConversation | None:
        """The conversation as stored, or None when unknown, another session's or expired."""

    @abstractmethod
    async def write(self, session_id: str, conversation_id: str, now: float, plan: Plan) -> Conversation | None:
        """In one transaction: load (None: as in `load`), ``change = plan(stored, now)``, store the
        change, return ``change.apply(conversation)`` with token ids. An exception from `plan`
        aborts the transaction and propagates."""

    @abstractmethod
    async def delete(self, session_id: str, conversation_id: str, now: float) -> bool:
        """False when there was nothing of this session's to delete."""

    @abstractmethod
    async def list(self, session_id: str, now: float, limit: int, after: Position | None) -> list[ConversationSummary]:
        """Up to `limit + 1` summaries after the cursor position, last updated first (ties: larger id first)."""

    @abstractmethod
    async def set_reply_text(self, session_id: str, conversation_id: str, reply_id: str, text: str,
                             now: float, lease_until: float) -> ReplyUpdate:
        """Sets the text and lease of the open reply if `reply_id` is it (status `streaming` as stored)."""

    # -- upkeep ----------------------------------------------------------------------------------------------------

    @abstractmethod
    async def size(self, now: float) -> StoreSize: ...

    @abstractmethod
    async def purge_expired(self, now: float) -> None: ...

    @abstractmethod
    async def ping(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...
