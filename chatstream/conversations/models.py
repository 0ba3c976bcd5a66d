"""The conversation store's data: typed, immutable snapshots.

Everything a store returns is a frozen dataclass with tuples inside, so a caller can keep or share a
snapshot without it changing under it; a change is always a store call that returns a new snapshot.
Times are Unix seconds (``time.time()``), so processes on several machines agree on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Union

Role = Literal["user", "assistant"]
MessageStatus = Literal["complete", "streaming", "interrupted"]
ROLES: tuple[Role, ...] = ("user", "assistant")
STATUSES: tuple[MessageStatus, ...] = ("complete", "streaming", "interrupted")

# JSON values as the standard json module reads them (feedback form data, generation overrides).
JsonScalar = Union[str, int, float, bool, None]  # noqa: UP007 - an alias evaluated at run time (3.10)
JsonValue = Union[JsonScalar, list["JsonValue"], dict[str, "JsonValue"]]  # noqa: UP007 - recursive


@dataclass(frozen=True)
class TurnTokens:
    """The exact token ids of one turn: what the engine saw (`prompt_token_ids`, the whole prompt)
    and produced (`output_token_ids`, the end-of-turn token included when it was sampled).

    `model_id` names what the ids belong to (model and prompt format); ids of another model must
    not be reused. The next turn can continue from ``prompt_token_ids + output_token_ids``.
    """

    model_id: str
    prompt_token_ids: tuple[int, ...]
    output_token_ids: tuple[int, ...]

    @property
    def all_token_ids(self) -> tuple[int, ...]:
        return self.prompt_token_ids + self.output_token_ids


@dataclass(frozen=True)
class ReplyStats:
    """Per-reply numbers, all optional (what the server measured)."""

    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    time_to_first_token_s: float | None = None
    tokens_per_s: float | None = None


@dataclass(frozen=True)
class Feedback:
    """Like/dislike on a reply, with the client's free-form data (the original's `form_data`)."""

    is_like: bool
    form_data: JsonValue = None


@dataclass(frozen=True)
class Message:
    """One message. A reply (`role == "assistant"`) is `streaming` while being generated,
    `complete` when it finished, `interrupted` when its writer stopped (disconnect, crash); an
    interrupted reply keeps the text it had."""

    id: str
    role: Role
    text: str
    created_at: float
    status: MessageStatus = "complete"
    finish_reason: str | None = None
    feedback: Feedback | None = None
    stats: ReplyStats | None = None
    tokens: TurnTokens | None = None  # replies only


@dataclass(frozen=True)
class Conversation:
    """One conversation of one session. `messages` alternate user, assistant, starting with a user
    message; only the last message can be `streaming` (the open reply)."""

    id: str
    session_id: str
    title: str
    system: str
    created_at: float
    updated_at: float
    messages: tuple[Message, ...] = ()

    @property
    def open_reply(self) -> Message | None:
        """The reply being generated, if any."""
        if self.messages and self.messages[-1].status == "streaming":
            return self.messages[-1]
        return None

    @property
    def last_tokens(self) -> TurnTokens | None:
        """The token ids of the latest reply that has them (what the next turn can continue from)."""
        for message in reversed(self.messages):
            if message.tokens is not None:
                return message.tokens
        return None

    def index_of(self, message_id: str) -> int | None:
        for i, message in enumerate(self.messages):
            if message.id == message_id:
                return i
        return None


@dataclass(frozen=True)
class ConversationSummary:
    """A line of a conversation list."""

    id: str
    title: str
    created_at: float
    updated_at: float
    num_messages: int


@dataclass(frozen=True)
class ConversationPage:
    """One page of a session's conversations, newest (last updated) first. `next_cursor` is None on
    the last page."""

    items: tuple[ConversationSummary, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class Session:
    """A browser's (or API client's) small server-side state. It owns conversations by id; a
    session record that expired leaves its conversations in place (they have their own TTL)."""

    id: str
    created_at: float
    last_seen_at: float
    current_conversation_id: str | None = None
    client_role: str | None = None
    generation_params: Mapping[str, JsonScalar] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreSize:
    """How many live records a store holds (expired ones are not counted)."""

    sessions: int
    conversations: int
    messages: int
