"""One write to a conversation, as data: what a backend must store in one transaction.

Every operation that changes a conversation is planned by a pure function (`turns.py`) from the
conversation as stored, and the plan, a `Change`, is applied by the backend inside one transaction
(SQLite: BEGIN IMMEDIATE ... COMMIT; Redis: WATCH ... MULTI/EXEC; memory: no await in between).
So the three backends share one set of rules and differ only in how they store.

A `Change` only ever keeps a prefix of the messages, rewrites some of that prefix in place and
appends after it: messages are never inserted in the middle, which keeps token-id chains
(`token_codec.py`) valid.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from chatstream.conversations.models import Conversation, Message


@dataclass(frozen=True)
class StoredConversation:
    """A conversation as stored: its open reply (if any) is `streaming` whatever its lease says;
    `lease_until` is when that reply counts as abandoned (None when no reply is open)."""

    conversation: Conversation
    lease_until: float | None

    def live_open_reply(self, now: float) -> Message | None:
        """The open reply while its writer still holds the lease."""
        reply = self.conversation.open_reply
        if reply is None or (self.lease_until is not None and self.lease_until < now):
            return None
        return reply

    def view(self, now: float) -> Conversation:
        """What readers see: an open reply whose lease ran out reads as `interrupted`, text kept."""
        reply = self.conversation.open_reply
        if reply is None or self.live_open_reply(now) is not None:
            return self.conversation
        messages = self.conversation.messages[:-1] + (replace(reply, status="interrupted"),)
        return replace(self.conversation, messages=messages)


@dataclass(frozen=True)
class Change:
    """
    keep: messages ``[0, keep)`` stay, the rest are removed.
    replaced: (index, message) pairs rewriting kept messages in place (same id).
    appended: messages added after the kept ones.
    title, system, updated_at: new values, None for unchanged.
    lease_until: the open reply's lease when the result ends with a streaming reply.
    """

    keep: int
    replaced: tuple[tuple[int, Message], ...] = ()
    appended: tuple[Message, ...] = ()
    title: str | None = None
    system: str | None = None
    updated_at: float | None = None
    lease_until: float | None = None

    def apply(self, conversation: Conversation) -> Conversation:
        rewritten = dict(self.replaced)
        messages = tuple(rewritten.get(i, m) for i, m in enumerate(conversation.messages[:self.keep]))
        return replace(
            conversation,
            title=conversation.title if self.title is None else self.title,
            system=conversation.system if self.system is None else self.system,
            updated_at=conversation.updated_at if self.updated_at is None else self.updated_at,
            messages=messages + self.appended,
        )

    def removed(self, conversation: Conversation) -> tuple[Message, ...]:
        return conversation.messages[self.keep:]

    def written_indices(self) -> list[int]:
        """Indices (in the result) of the messages this change writes."""
        return sorted({i for i, _ in self.replaced} | set(range(self.keep, self.keep + len(self.appended))))

    def result_lease(self, result: Conversation, stored_lease: float | None) -> float | None:
        """The lease to store with the result."""
        if result.open_reply is None:
            return None
        return self.lease_until if self.lease_until is not None else stored_lease
