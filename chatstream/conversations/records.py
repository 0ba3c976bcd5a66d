"""Messages and session data as JSON records, for the backends that store text (SQLite, Redis).

Records come from the store itself, so they are read back without validation; untrusted input
(imports) goes through `export_format.py` instead. Token ids are not part of a record: they are
stored apart, packed (`token_codec.py`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from chatstream.conversations.models import Feedback, Message, ReplyStats, TurnTokens


def feedback_to_json(feedback: Feedback | None) -> str | None:
    return None if feedback is None else json.dumps(asdict(feedback), ensure_ascii=False)


def feedback_from_json(text: str | None) -> Feedback | None:
    return None if text is None else Feedback(**json.loads(text))


def stats_to_json(stats: ReplyStats | None) -> str | None:
    return None if stats is None else json.dumps(asdict(stats))


def stats_from_json(text: str | None) -> ReplyStats | None:
    return None if text is None else ReplyStats(**json.loads(text))


def message_to_record(message: Message) -> dict[str, Any]:
    return {
        "id": message.id, "role": message.role, "text": message.text, "created_at": message.created_at,
        "status": message.status, "finish_reason": message.finish_reason,
        "feedback": None if message.feedback is None else asdict(message.feedback),
        "stats": None if message.stats is None else asdict(message.stats),
    }


def message_from_record(record: dict[str, Any], tokens: TurnTokens | None = None) -> Message:
    feedback = record.get("feedback")
    stats = record.get("stats")
    return Message(
        id=record["id"], role=record["role"], text=record["text"], created_at=record["created_at"],
        status=record["status"], finish_reason=record.get("finish_reason"),
        feedback=None if feedback is None else Feedback(**feedback),
        stats=None if stats is None else ReplyStats(**stats), tokens=tokens,
    )


def message_to_json(message: Message) -> str:
    return json.dumps(message_to_record(message), ensure_ascii=False)


def message_from_json(text: str | bytes, tokens: TurnTokens | None = None) -> Message:
    return message_from_record(json.loads(text), tokens)
