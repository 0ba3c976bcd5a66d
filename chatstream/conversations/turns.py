"""The rules of a conversation's turns, as pure functions that plan a `Change`.

Each function takes the conversation as stored (`StoredConversation`), checks that the operation
is allowed in its state, and returns the `Change` a backend applies in one transaction. Backends
never decide these rules themselves, so memory, SQLite and Redis behave the same.

States of the last message: a user message is always followed by its reply; the reply is
`streaming` from `begin_turn` (or `regenerate`) until `finish_reply` (or `discard_turn`, or until
its lease runs out: then it reads as `interrupted`, and the next write stores it so).
"""

from __future__ import annotations

from dataclasses import replace

from chatstream.conversations.changes import Change, StoredConversation
from chatstream.conversations.errors import (
    MessageNotFound,
    NothingToRegenerate,
    ReplyClosed,
    TurnInProgress,
    ValidationFailed,
)
from chatstream.conversations.ids import new_message_id
from chatstream.conversations.models import Conversation, Feedback, Message, MessageStatus, ReplyStats, TurnTokens

TITLE_CHARS = 80


def default_title(user_text: str) -> str:
    """The first non-empty line of the first user message, whitespace collapsed, cut at 80 characters."""
    line = next((ln for ln in user_text.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    return line if len(line) <= TITLE_CHARS else line[:TITLE_CHARS - 1] + "…"


def open_reply(now: float) -> Message:
    return Message(new_message_id(), "assistant", "", now, status="streaming")


def _settle_stale_reply(stored: StoredConversation, now: float) -> tuple[tuple[int, Message], ...]:
    """Refuses a live open reply; an abandoned one is stored as interrupted by this change."""
    conversation = stored.conversation
    if stored.live_open_reply(now) is not None:
        raise TurnInProgress(conversation.id)
    stale = conversation.open_reply
    if stale is None:
        return ()
    return ((len(conversation.messages) - 1, replace(stale, status="interrupted")),)


def begin_turn(stored: StoredConversation, now: float, lease_until: float, user_text: str) -> Change:
    """Appends the user message and an open reply; the first user message becomes the title of an
    untitled conversation."""
    conversation = stored.conversation
    settled = _settle_stale_reply(stored, now)
    user = Message(new_message_id(), "user", user_text, now)
    title = default_title(user_text) if not conversation.title else None
    return Change(keep=len(conversation.messages), replaced=settled, appended=(user, open_reply(now)),
                  title=title, updated_at=now, lease_until=lease_until)


def regenerate(stored: StoredConversation, now: float, lease_until: float) -> Change:
    """Replaces the last reply (complete or interrupted) with a new open reply (a new message id)."""
    conversation = stored.conversation
    _settle_stale_reply(stored, now)  # a live reply refuses; a stale one is replaced anyway
    if not conversation.messages or conversation.messages[-1].role != "assistant":
        raise NothingToRegenerate(conversation.id)
    return Change(keep=len(conversation.messages) - 1, appended=(open_reply(now),), updated_at=now,
                  lease_until=lease_until)


def _the_open_reply(conversation: Conversation, reply_id: str) -> Message:
    """The open reply with this id, as stored (a writer that outlived its lease may still finish,
    as long as no other write settled its reply). Any other id, removed or never there, is not open."""
    reply = conversation.open_reply
    if reply is None or reply.id != reply_id:
        raise ReplyClosed(reply_id)
    return reply


def finish_reply(stored: StoredConversation, now: float, reply_id: str, *, text: str, finish_reason: str | None,
                 tokens: TurnTokens | None, stats: ReplyStats | None, status: MessageStatus) -> Change:
    conversation = stored.conversation
    reply = _the_open_reply(conversation, reply_id)
    done = replace(reply, text=text, status=status, finish_reason=finish_reason, tokens=tokens, stats=stats)
    last = len(conversation.messages) - 1
    return Change(keep=len(conversation.messages), replaced=((last, done),), updated_at=now)


def discard_turn(stored: StoredConversation, now: float, reply_id: str) -> Change:
    """Removes the open reply and the user message before it (a reply that never started)."""
    conversation = stored.conversation
    _the_open_reply(conversation, reply_id)
    return Change(keep=max(0, len(conversation.messages) - 2), updated_at=now)


def set_feedback(stored: StoredConversation, message_id: str, feedback: Feedback | None) -> Change:
    """Feedback on a reply; does not move the conversation up the list (it is not activity)."""
    conversation = stored.conversation
    index = conversation.index_of(message_id)
    if index is None:
        raise MessageNotFound(message_id)
    message = conversation.messages[index]
    if message.role != "assistant":
        raise ValidationFailed.one("message_id", f"feedback applies to replies; message {message_id} is a user message")
    return Change(keep=len(conversation.messages), replaced=((index, replace(message, feedback=feedback)),))


def clear(stored: StoredConversation, now: float) -> Change:
    """Removes every message (the original's /clear_context); title and system text stay. An open
    reply goes too: its writer's next write gets `ReplyClosed`."""
    return Change(keep=0, updated_at=now)


def update_details(stored: StoredConversation, now: float, title: str | None, system: str | None) -> Change:
    return Change(keep=len(stored.conversation.messages), title=title, system=system, updated_at=now)


def fork_messages(view: Conversation, before_message_id: str) -> tuple[Message, ...]:
    """The messages before a user message, with new ids (for edit-and-resend: fork before the
    message being edited, then begin a turn with the new text)."""
    index = view.index_of(before_message_id)
    if index is None:
        raise MessageNotFound(before_message_id)
    if view.messages[index].role != "user":
        raise ValidationFailed.one("before_message_id",
                                   f"must be a user message; message {before_message_id} is a reply")
    return tuple(replace(m, id=new_message_id()) for m in view.messages[:index])
