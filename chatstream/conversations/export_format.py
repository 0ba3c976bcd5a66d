"""The export/import format of one conversation (version 1), and the validation of imports.

The pydantic models are the format's schema: the HTTP layer can use `ConversationExport` as the
request body of ``POST /conversations/import`` so the schema shows in ``/openapi.json``.
An import is checked in two passes: the schema (types, ranges, unknown fields), then the rules a
conversation keeps (user and assistant messages alternate starting with a user message, every user
message has its reply, ids are unique, only replies carry feedback, stats and token ids). Every
problem is reported with its path, e.g. ``messages[3].role``. The session id is never exported.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictBool, StrictInt, StrictStr
from pydantic import ValidationError as PydanticValidationError

from chatstream.conversations.errors import Problem, ValidationFailed
from chatstream.conversations.models import Conversation, Feedback, Message, ReplyStats, TurnTokens
from chatstream.conversations.validation import (
    MAX_FORM_DATA_BYTES,
    MAX_MODEL_ID_CHARS,
    MAX_SHORT_CHARS,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    MAX_TOKEN_IDS,
    TOKEN_ID_LIMIT,
)

FORMAT = "chatstream.conversation"
VERSION = 1
MAX_IMPORT_MESSAGES = 10_000
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

Time = Annotated[float, Field(ge=0, allow_inf_nan=False)]
TokenId = Annotated[StrictInt, Field(ge=0, lt=TOKEN_ID_LIMIT)]
Count = Annotated[StrictInt, Field(ge=0)]
Rate = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokensV1(_Strict):
    model_id: Annotated[StrictStr, Field(min_length=1, max_length=MAX_MODEL_ID_CHARS)]
    prompt_token_ids: Annotated[list[TokenId], Field(max_length=MAX_TOKEN_IDS)]
    output_token_ids: Annotated[list[TokenId], Field(max_length=MAX_TOKEN_IDS)]


class StatsV1(_Strict):
    prompt_tokens: Count | None = None
    cached_tokens: Count | None = None
    completion_tokens: Count | None = None
    time_to_first_token_s: Rate | None = None
    tokens_per_s: Rate | None = None


class FeedbackV1(_Strict):
    is_like: StrictBool
    form_data: JsonValue = None


class MessageV1(_Strict):
    id: Annotated[StrictStr, Field(pattern=UUID_PATTERN)]
    role: Literal["user", "assistant"]
    text: Annotated[StrictStr, Field(max_length=MAX_TEXT_CHARS)]
    created_at: Time
    status: Literal["complete", "streaming", "interrupted"] = "complete"
    finish_reason: Annotated[StrictStr, Field(max_length=MAX_SHORT_CHARS)] | None = None
    feedback: FeedbackV1 | None = None
    stats: StatsV1 | None = None
    tokens: TokensV1 | None = None


class ConversationExport(_Strict):
    """One exported conversation."""

    format: Literal["chatstream.conversation"]
    version: Literal[1]
    id: Annotated[StrictStr, Field(pattern=UUID_PATTERN)] | None = None  # informational: imports get a new id
    title: Annotated[StrictStr, Field(max_length=MAX_TITLE_CHARS)] = ""
    system: Annotated[StrictStr, Field(max_length=MAX_TEXT_CHARS)] = ""
    created_at: Time
    updated_at: Time
    messages: Annotated[list[MessageV1], Field(max_length=MAX_IMPORT_MESSAGES)] = []


def to_export(conversation: Conversation) -> dict[str, Any]:
    """The conversation in the export format, as JSON-ready data."""
    messages = []
    for m in conversation.messages:
        messages.append({
            "id": m.id, "role": m.role, "text": m.text, "created_at": m.created_at, "status": m.status,
            "finish_reason": m.finish_reason,
            "feedback": None if m.feedback is None else asdict(m.feedback),
            "stats": None if m.stats is None else asdict(m.stats),
            "tokens": None if m.tokens is None else {
                "model_id": m.tokens.model_id, "prompt_token_ids": list(m.tokens.prompt_token_ids),
                "output_token_ids": list(m.tokens.output_token_ids)},
        })
    return {"format": FORMAT, "version": VERSION, "id": conversation.id, "title": conversation.title,
            "system": conversation.system, "created_at": conversation.created_at,
            "updated_at": conversation.updated_at, "messages": messages}


def _path(loc: tuple[int | str, ...]) -> str | None:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or None


def _rule_problems(messages: list[MessageV1]) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, m in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        if m.role != expected:
            problems.append(Problem(f"messages[{i}].role", f"must be {expected!r} (user and assistant messages "
                                                           f"alternate, starting with a user message), got {m.role!r}"))
        if m.id in seen:
            problems.append(Problem(f"messages[{i}].id", f"duplicates messages[{seen[m.id]}].id"))
        seen.setdefault(m.id, i)
        if m.role == "user":
            for name in ("feedback", "stats", "tokens", "finish_reason"):
                if getattr(m, name) is not None:
                    problems.append(Problem(f"messages[{i}].{name}", "only replies (assistant messages) have one"))
            if m.status != "complete":
                problems.append(Problem(f"messages[{i}].status", f"user messages are 'complete', got {m.status!r}"))
        if m.feedback is not None and len(json.dumps(m.feedback.form_data).encode()) > MAX_FORM_DATA_BYTES:
            problems.append(Problem(f"messages[{i}].feedback.form_data", f"must be at most {MAX_FORM_DATA_BYTES} "
                                                                         "bytes as JSON"))
    if len(messages) % 2 == 1:
        problems.append(Problem("messages", "the last user message has no reply"))
    return problems


def _message(m: MessageV1) -> Message:
    tokens = None if m.tokens is None else TurnTokens(
        m.tokens.model_id, tuple(m.tokens.prompt_token_ids), tuple(m.tokens.output_token_ids))
    return Message(
        id=m.id, role=m.role, text=m.text, created_at=m.created_at,
        # No writer continues an imported reply: one that was streaming is interrupted.
        status="interrupted" if m.status == "streaming" else m.status,
        finish_reason=m.finish_reason,
        feedback=None if m.feedback is None else Feedback(m.feedback.is_like, m.feedback.form_data),
        stats=None if m.stats is None else ReplyStats(**m.stats.model_dump()), tokens=tokens)


def parse_import(data: object) -> tuple[ConversationExport, tuple[Message, ...]]:
    """Validates an import (a mapping, or JSON text/bytes); raises `ValidationFailed` naming every problem."""
    if isinstance(data, (str, bytes, bytearray)):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValidationFailed([Problem(None, f"not valid JSON: {exc}")], "invalid conversation import") from None
    if not isinstance(data, dict):
        raise ValidationFailed([Problem(None, f"must be a JSON object in the {FORMAT!r} format, "
                                              f"got {type(data).__name__}")], "invalid conversation import")
    try:
        parsed = ConversationExport.model_validate(data)
    except PydanticValidationError as exc:
        problems = [Problem(_path(tuple(e["loc"])), e["msg"]) for e in exc.errors(include_url=False)]
        raise ValidationFailed(problems, "invalid conversation import") from None
    problems = _rule_problems(parsed.messages)
    if problems:
        raise ValidationFailed(problems, "invalid conversation import")
    return parsed, tuple(_message(m) for m in parsed.messages)
