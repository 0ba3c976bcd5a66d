"""Conversation lists: the order (last updated first, ties by id) and opaque cursors.

A cursor is the (updated_at, id) of the last item of a page; the next page holds the items strictly
after it in the order. A conversation updated while a client pages moves to the top, so the client
skips it on later pages rather than seeing it twice.
"""

from __future__ import annotations

import base64
import binascii
import math

from chatstream.conversations.errors import InvalidCursor
from chatstream.conversations.ids import is_uuid
from chatstream.conversations.models import ConversationSummary

Position = tuple[float, str]  # (updated_at, id); larger comes first


def position(summary: ConversationSummary) -> Position:
    return (summary.updated_at, summary.id)


def encode_cursor(summary: ConversationSummary) -> str:
    raw = f"{summary.updated_at!r}|{summary.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: object) -> Position:
    if not isinstance(cursor, str) or not 0 < len(cursor) <= 200:
        raise InvalidCursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        updated, conversation_id = raw.split("|")
        updated_at = float(updated)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor() from None
    if not math.isfinite(updated_at) or not is_uuid(conversation_id):
        raise InvalidCursor()
    return updated_at, conversation_id


def is_after(summary: ConversationSummary, cursor: Position | None) -> bool:
    """Whether `summary` comes after the cursor's item in the list order."""
    return cursor is None or position(summary) < cursor


def take_page(ordered: list[ConversationSummary], limit: int) -> tuple[tuple[ConversationSummary, ...], str | None]:
    """The first `limit` items of `ordered` (which may hold one more, to tell whether a next page exists)."""
    items = tuple(ordered[:limit])
    more = len(ordered) > limit
    return items, (encode_cursor(items[-1]) if more and items else None)
