"""The conversation store's exceptions: one type per answer a caller gives.

The store knows nothing of HTTP; the mapping the server uses is:

| exception | meaning | HTTP |
|---|---|---|
| `ValidationFailed` (and `InvalidId`, `InvalidCursor`) | bad input; `problems` name each field | 400 / 422 |
| `NotFound` (`ConversationNotFound`, `MessageNotFound`, `SessionNotFound`) | unknown id, or another session's | 404 |
| `Conflict` (`TurnInProgress`, `ReplyClosed`, `NothingToRegenerate`) | the conversation's state refuses it | 409 |
| `StoreUnavailable` | the backend can't be reached or refused to work | 503 |

`ValidationFailed` is also a `ValueError` and `NotFound` a `LookupError`, so callers that only know
the builtin types still catch them.
"""

from __future__ import annotations

from dataclasses import dataclass


class StoreError(Exception):
    """Base of every error the conversation store raises on purpose."""


class StoreUnavailable(StoreError):
    """The backend can't be reached (Redis down, a database file that can't be opened, a lock held
    too long). Nothing was changed by the call that raised it."""


class StoreConfigError(StoreError, ValueError):
    """A store URL or option that can't work (raised at start, before any request)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: `field` is a dotted path such as ``messages[3].role``
    (None when the whole input is wrong)."""

    field: str | None
    message: str

    def __str__(self) -> str:
        return self.message if self.field is None else f"{self.field}: {self.message}"


class ValidationFailed(StoreError, ValueError):
    """Input the store refuses; `problems` lists every problem found (at least one)."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...], what: str = "invalid input") -> None:
        self.problems = tuple(problems)
        shown = "; ".join(str(p) for p in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"{what}: {shown}{more}")

    @property
    def field(self) -> str | None:
        """The first problem's field, for answers that name one."""
        return self.problems[0].field

    @classmethod
    def one(cls, field: str | None, message: str) -> "ValidationFailed":
        return cls([Problem(field, message)])


class InvalidId(ValidationFailed):
    """A string that is not an id of the expected kind (never looked up in the backend)."""

    def __init__(self, field: str, value: object, expected: str) -> None:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        super().__init__([Problem(field, f"must be {expected}, got {shown}")], "invalid id")


class InvalidCursor(ValidationFailed):
    """A pagination cursor this store did not give out."""

    def __init__(self) -> None:
        super().__init__([Problem("cursor", "is not a cursor returned by list_conversations")], "invalid cursor")


class NotFound(StoreError, LookupError):
    """Unknown id. A conversation of another session raises exactly the same error as an unknown one."""


class ConversationNotFound(NotFound):
    def __init__(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        super().__init__(f"conversation {conversation_id} not found")


class MessageNotFound(NotFound):
    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        super().__init__(f"message {message_id} not found in this conversation")


class SessionNotFound(NotFound):
    def __init__(self) -> None:
        # The session id is a bearer secret: never echo it.
        super().__init__("session not found or expired")


class Conflict(StoreError):
    """The conversation's current state refuses the operation (try again later or reload)."""


class TurnInProgress(Conflict):
    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"conversation {conversation_id} has a reply being generated")


class ReplyClosed(Conflict):
    def __init__(self, reply_id: str) -> None:
        super().__init__(f"reply {reply_id} is not open (finished, interrupted, cleared, replaced or unknown)")


class NothingToRegenerate(Conflict):
    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"conversation {conversation_id} has no reply to regenerate")
