"""`ConversationStore`: the one interface to stored sessions and conversations.

Async, used from the event loop only (never from the engine thread). The public methods below are
the contract, and they are the same for every backend: they check their arguments (ids, texts,
limits: `ValidationFailed` / `InvalidId` before anything is looked up), plan each write with the
pure rules of `turns.py`, and call the storage primitives of a `StorageBackend` (`backend.py`),
each of which the backend runs atomically.

Ownership: every conversation call takes the caller's session id; a conversation of another
session behaves exactly like an unknown id (None / `ConversationNotFound`, same message).

Crash rule: a reply left `streaming` by a writer that stopped (crash, `kill -9`, a process of a
shared store that died) reads as `interrupted` once its lease ran out (`StoreOptions.reply_lease_s`
after the writer's last `begin_turn`/`update_reply`); its partial text is kept. This is decided on
read, not on open: with several processes on one store, opening it cannot tell a dead writer from
a live one in another process. The next write to that conversation stores the interruption.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from typing import Any

from chatstream.conversations import export_format, turns
from chatstream.conversations.backend import ReplyUpdate, StorageBackend
from chatstream.conversations.changes import Change, StoredConversation
from chatstream.conversations.errors import ConversationNotFound, ReplyClosed, SessionNotFound
from chatstream.conversations.ids import (
    check_conversation_id,
    check_message_id,
    check_session_id,
    new_conversation_id,
    new_session_id,
)
from chatstream.conversations.models import (
    Conversation,
    ConversationPage,
    Feedback,
    JsonScalar,
    Message,
    MessageStatus,
    ReplyStats,
    Session,
    StoreSize,
    TurnTokens,
)
from chatstream.conversations.options import StoreOptions
from chatstream.conversations.pagination import decode_cursor, take_page
from chatstream.conversations.validation import (
    check_feedback,
    check_generation_params,
    check_limit,
    check_short,
    check_stats,
    check_text,
    check_title,
    check_tokens,
)


class Unset(enum.Enum):
    """Marks a keyword argument that was not given (None is a value: it clears)."""

    UNSET = 0


UNSET = Unset.UNSET


class ConversationStore:
    """Sessions and their conversations. Open one with `open_store(url, options)`; close it with
    `await store.close()` or ``async with``."""

    def __init__(self, backend: StorageBackend) -> None:
        self.backend = backend
        self.options: StoreOptions = backend.options

    def __repr__(self) -> str:
        return f"ConversationStore({self.backend.describe()})"

    async def __aenter__(self) -> "ConversationStore":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- sessions -------------------------------------------------------------------------------------------------

    async def create_session(self, session_id: str | None = None) -> Session:
        """A new session with a fresh id; given an id (from a signed cookie whose record expired),
        that session again (an existing one is returned, touched, with its data)."""
        session_id = new_session_id() if session_id is None else check_session_id(session_id)
        return await self.backend.create_session(session_id, time.time())

    async def get_session(self, session_id: str) -> Session | None:
        """The session, or None when unknown or idle longer than `session_ttl_s`."""
        return await self.backend.get_session(check_session_id(session_id), time.time(), touch=False)

    async def touch_session(self, session_id: str) -> Session | None:
        """Like `get_session`, and restarts its idle timer."""
        return await self.backend.get_session(check_session_id(session_id), time.time(), touch=True)

    async def update_session(self, session_id: str, *, current_conversation_id: str | None | Unset = UNSET,
                             client_role: str | None | Unset = UNSET,
                             generation_params: Mapping[str, JsonScalar] | Unset = UNSET) -> Session:
        """Sets the given fields (None clears); touches the session. `SessionNotFound` when expired."""
        check_session_id(session_id)
        fields: dict[str, Any] = {}
        if current_conversation_id is not UNSET:
            fields["current_conversation_id"] = None if current_conversation_id is None else \
                check_conversation_id(current_conversation_id, "current_conversation_id")
        if client_role is not UNSET:
            fields["client_role"] = check_short(client_role, "client_role")
        if generation_params is not UNSET:
            fields["generation_params"] = check_generation_params(generation_params)
        session = await self.backend.update_session(session_id, time.time(), fields)
        if session is None:
            raise SessionNotFound()
        return session

    # -- conversations ---------------------------------------------------------------------------------------------

    async def create_conversation(self, session_id: str, *, title: str = "", system: str = "") -> Conversation:
        """An empty conversation; an empty title becomes the first user message's first line."""
        check_session_id(session_id)
        now = time.time()
        conversation = Conversation(new_conversation_id(), session_id, check_title(title),
                                    check_text(system, "system"), now, now)
        await self.backend.insert(conversation)
        return conversation

    async def get_conversation(self, session_id: str, conversation_id: str, *,
                               include_tokens: bool = True) -> Conversation | None:
        """The conversation with its messages (token ids only when `include_tokens`), or None."""
        check_session_id(session_id)
        check_conversation_id(conversation_id)
        now = time.time()
        stored = await self.backend.load(session_id, conversation_id, now, include_tokens)
        return None if stored is None else stored.view(now)

    async def list_conversations(self, session_id: str, *, limit: int = 20,
                                 cursor: str | None = None) -> ConversationPage:
        """This session's conversations, last updated first; pass `next_cursor` for the next page."""
        check_session_id(session_id)
        check_limit(limit)
        after = None if cursor is None else decode_cursor(cursor)
        items, next_cursor = take_page(await self.backend.list(session_id, time.time(), limit, after), limit)
        return ConversationPage(items, next_cursor)

    async def update_conversation(self, session_id: str, conversation_id: str, *, title: str | None = None,
                                  system: str | None = None) -> Conversation:
        """Sets the title and/or the system text (None: unchanged)."""
        title = None if title is None else check_title(title)
        system = None if system is None else check_text(system, "system")
        return await self._change(session_id, conversation_id,
                                  lambda stored, now: turns.update_details(stored, now, title, system))

    async def delete_conversation(self, session_id: str, conversation_id: str) -> None:
        check_session_id(session_id)
        check_conversation_id(conversation_id)
        if not await self.backend.delete(session_id, conversation_id, time.time()):
            raise ConversationNotFound(conversation_id)

    async def clear_conversation(self, session_id: str, conversation_id: str) -> Conversation:
        """Removes every message (the original's /clear_context); title and system text stay."""
        return await self._change(session_id, conversation_id, lambda stored, now: turns.clear(stored, now))

    async def export_conversation(self, session_id: str, conversation_id: str) -> dict[str, Any]:
        """The conversation in the export format (JSON-ready; `export_format.py`), token ids included."""
        conversation = await self._require(session_id, conversation_id, include_tokens=True)
        return export_format.to_export(conversation)

    async def import_conversation(self, session_id: str, data: Mapping[str, Any] | str | bytes) -> Conversation:
        """A new conversation of this session from an export (new conversation id, messages kept).
        `ValidationFailed` names every problem of a malformed import; a reply that was streaming
        is imported as interrupted."""
        check_session_id(session_id)
        parsed, messages = export_format.parse_import(data)
        now = time.time()
        conversation = Conversation(new_conversation_id(), session_id, parsed.title, parsed.system,
                                    parsed.created_at, now, messages)
        await self.backend.insert(conversation)
        return conversation

    async def fork_conversation(self, session_id: str, conversation_id: str, before_message_id: str, *,
                                title: str | None = None) -> Conversation:
        """A new conversation holding the messages before the given user message (new message ids,
        token ids kept): edit-and-resend forks before the edited message, then begins a turn."""
        check_message_id(before_message_id, "before_message_id")
        title = None if title is None else check_title(title)
        source = await self._require(session_id, conversation_id, include_tokens=True)
        messages = turns.fork_messages(source, before_message_id)
        now = time.time()
        conversation = Conversation(new_conversation_id(), session_id, source.title if title is None else title,
                                    source.system, now, now, messages)
        await self.backend.insert(conversation)
        return conversation

    # -- turns -----------------------------------------------------------------------------------------------------

    async def begin_turn(self, session_id: str, conversation_id: str, user_text: str) -> Conversation:
        """Appends the user message and an open (`streaming`) reply in one transaction; the reply is
        the result's last message (`.open_reply`). `TurnInProgress` while another reply is open."""
        check_text(user_text, "user_text", allow_empty=False)
        lease = self.options.reply_lease_s
        return await self._change(session_id, conversation_id,
                                  lambda stored, now: turns.begin_turn(stored, now, now + lease, user_text))

    async def update_reply(self, session_id: str, conversation_id: str, reply_id: str, text: str) -> None:
        """Stores the open reply's partial text and renews its lease (call it at least every
        `options.heartbeat_s`, with the same text if nothing new came). One small write."""
        check_session_id(session_id)
        check_conversation_id(conversation_id)
        check_message_id(reply_id, "reply_id")
        check_text(text, "text")
        now = time.time()
        outcome = await self.backend.set_reply_text(session_id, conversation_id, reply_id, text, now,
                                                    now + self.options.reply_lease_s)
        self._raise_for(outcome, conversation_id, reply_id)

    async def finish_reply(self, session_id: str, conversation_id: str, reply_id: str, *, text: str,
                           finish_reason: str | None = None, tokens: TurnTokens | None = None,
                           stats: ReplyStats | None = None, interrupted: bool = False) -> Conversation:
        """Closes the open reply: final text, finish reason, the turn's token ids and stats;
        `interrupted=True` for a reply cut short (client gone), its text kept."""
        check_message_id(reply_id, "reply_id")
        check_text(text, "text")
        finish_reason = check_short(finish_reason, "finish_reason")
        tokens, stats = check_tokens(tokens), check_stats(stats)
        status: MessageStatus = "interrupted" if interrupted else "complete"
        return await self._change(session_id, conversation_id, lambda stored, now: turns.finish_reply(
            stored, now, reply_id, text=text, finish_reason=finish_reason, tokens=tokens, stats=stats,
            status=status))

    async def regenerate(self, session_id: str, conversation_id: str) -> Conversation:
        """Replaces the last reply with a new open reply (new id) for the same user message."""
        lease = self.options.reply_lease_s
        return await self._change(session_id, conversation_id,
                                  lambda stored, now: turns.regenerate(stored, now, now + lease))

    async def discard_turn(self, session_id: str, conversation_id: str, reply_id: str) -> Conversation:
        """Removes the open reply and the user message before it (a reply that never started).
        After `regenerate`, finish the reply as interrupted instead: this would drop the exchange."""
        check_message_id(reply_id, "reply_id")
        return await self._change(session_id, conversation_id,
                                  lambda stored, now: turns.discard_turn(stored, now, reply_id))

    async def set_feedback(self, session_id: str, conversation_id: str, message_id: str,
                           feedback: Feedback | None) -> Message:
        """Sets (None: clears) the feedback of a reply; returns the reply."""
        check_message_id(message_id)
        feedback = check_feedback(feedback)
        result = await self._change(session_id, conversation_id,
                                    lambda stored, now: turns.set_feedback(stored, message_id, feedback))
        index = result.index_of(message_id)
        assert index is not None  # the plan checked it
        return result.messages[index]

    # -- upkeep ----------------------------------------------------------------------------------------------------

    async def size(self) -> StoreSize:
        """Live sessions, conversations and messages (expired ones purged first)."""
        await self.backend.purge_expired(time.time())
        return await self.backend.size(time.time())

    async def purge_expired(self) -> None:
        """Deletes expired sessions and conversations now (backends also do it on their own)."""
        await self.backend.purge_expired(time.time())

    async def ping(self) -> None:
        """Returns when the backend answers; `StoreUnavailable` otherwise."""
        await self.backend.ping()

    async def close(self) -> None:
        await self.backend.close()

    # -- helpers ---------------------------------------------------------------------------------------------------

    async def _require(self, session_id: str, conversation_id: str, *, include_tokens: bool) -> Conversation:
        conversation = await self.get_conversation(session_id, conversation_id, include_tokens=include_tokens)
        if conversation is None:
            raise ConversationNotFound(conversation_id)
        return conversation

    async def _change(self, session_id: str, conversation_id: str,
                      plan: Callable[[StoredConversation, float], Change]) -> Conversation:
        check_session_id(session_id)
        check_conversation_id(conversation_id)
        result = await self.backend.write(session_id, conversation_id, time.time(), plan)
        if result is None:
            raise ConversationNotFound(conversation_id)
        return result

    @staticmethod
    def _raise_for(outcome: ReplyUpdate, conversation_id: str, reply_id: str) -> None:
        if outcome == "no_conversation":
            raise ConversationNotFound(conversation_id)
        if outcome == "closed":
            raise ReplyClosed(reply_id)
