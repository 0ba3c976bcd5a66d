"""The `memory` backend: dicts in this process, for tests and the embedded `ChatStream(...)` default.

Atomicity comes from the event loop: no primitive awaits between reading and writing. Snapshots
are immutable, so stored objects are handed out as they are. Nothing survives the process.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from chatstream.conversations.backend import Plan, ReplyUpdate, StorageBackend
from chatstream.conversations.changes import StoredConversation
from chatstream.conversations.models import Conversation, ConversationSummary, Session, StoreSize
from chatstream.conversations.pagination import Position, is_after, position

_SESSION_FIELDS = {f.name for f in fields(Session)}


class MemoryBackend(StorageBackend):
    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self._sessions: dict[str, Session] = {}
        self._conversations: dict[str, StoredConversation] = {}

    def describe(self) -> str:
        return "memory"

    # -- sessions --------------------------------------------------------------------------------------------------

    def _live_session(self, session_id: str, now: float) -> Session | None:
        session = self._sessions.get(session_id)
        if session is not None and self.session_expired(session.last_seen_at, now):
            del self._sessions[session_id]
            return None
        return session

    @staticmethod
    def _copy(session: Session) -> Session:
        return replace(session, generation_params=dict(session.generation_params))

    async def create_session(self, session_id: str, now: float) -> Session:
        session = self._live_session(session_id, now)
        session = Session(session_id, now, now) if session is None else replace(session, last_seen_at=now)
        self._sessions[session_id] = session
        return self._copy(session)

    async def get_session(self, session_id: str, now: float, *, touch: bool) -> Session | None:
        session = self._live_session(session_id, now)
        if session is None:
            return None
        if touch:
            session = self._sessions[session_id] = replace(session, last_seen_at=now)
        return self._copy(session)

    async def update_session(self, session_id: str, now: float, fields: dict[str, Any]) -> Session | None:
        session = self._live_session(session_id, now)
        if session is None:
            return None
        assert set(fields) <= _SESSION_FIELDS
        session = self._sessions[session_id] = replace(session, last_seen_at=now, **fields)
        return self._copy(session)

    # -- conversations ---------------------------------------------------------------------------------------------

    def _own(self, session_id: str, conversation_id: str, now: float) -> StoredConversation | None:
        stored = self._conversations.get(conversation_id)
        if stored is None:
            return None
        if self.conversation_expired(stored.conversation.updated_at, now):
            del self._conversations[conversation_id]
            return None
        return stored if stored.conversation.session_id == session_id else None

    async def insert(self, conversation: Conversation) -> None:
        self._conversations[conversation.id] = StoredConversation(conversation, None)

    async def load(self, session_id: str, conversation_id: str, now: float,
                   include_tokens: bool) -> StoredConversation | None:
        stored = self._own(session_id, conversation_id, now)
        if stored is None or include_tokens:
            return stored
        messages = tuple(replace(m, tokens=None) if m.tokens is not None else m for m in stored.conversation.messages)
        return replace(stored, conversation=replace(stored.conversation, messages=messages))

    async def write(self, session_id: str, conversation_id: str, now: float, plan: Plan) -> Conversation | None:
        stored = self._own(session_id, conversation_id, now)
        if stored is None:
            return None
        change = plan(stored, now)
        result = change.apply(stored.conversation)
        lease = change.result_lease(result, stored.lease_until)
        self._conversations[conversation_id] = StoredConversation(result, lease)
        return result

    async def delete(self, session_id: str, conversation_id: str, now: float) -> bool:
        if self._own(session_id, conversation_id, now) is None:
            return False
        del self._conversations[conversation_id]
        return True

    async def list(self, session_id: str, now: float, limit: int, after: Position | None) -> list[ConversationSummary]:
        summaries = []
        for stored in list(self._conversations.values()):
            c = stored.conversation
            if c.session_id != session_id or self._own(session_id, c.id, now) is None:
                continue
            summary = ConversationSummary(c.id, c.title, c.created_at, c.updated_at, len(c.messages))
            if is_after(summary, after):
                summaries.append(summary)
        summaries.sort(key=position, reverse=True)
        return summaries[:limit + 1]

    async def set_reply_text(self, session_id: str, conversation_id: str, reply_id: str, text: str,
                             now: float, lease_until: float) -> ReplyUpdate:
        stored = self._own(session_id, conversation_id, now)
        if stored is None:
            return "no_conversation"
        conversation = stored.conversation
        reply = conversation.open_reply
        if reply is None or reply.id != reply_id:
            return "closed"
        messages = conversation.messages[:-1] + (replace(reply, text=text),)
        self._conversations[conversation_id] = StoredConversation(replace(conversation, messages=messages), lease_until)
        return "ok"

    # -- upkeep ----------------------------------------------------------------------------------------------------

    async def size(self, now: float) -> StoreSize:
        live = [s for s in self._conversations.values()
                if not self.conversation_expired(s.conversation.updated_at, now)]
        sessions = sum(1 for s in self._sessions.values() if not self.session_expired(s.last_seen_at, now))
        return StoreSize(sessions, len(live), sum(len(s.conversation.messages) for s in live))

    async def purge_expired(self, now: float) -> None:
        for session_id in [k for k, s in self._sessions.items() if self.session_expired(s.last_seen_at, now)]:
            del self._sessions[session_id]
        for cid in [k for k, s in self._conversations.items()
                    if self.conversation_expired(s.conversation.updated_at, now)]:
            del self._conversations[cid]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
