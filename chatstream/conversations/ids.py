"""Ids: how the store makes them and what a valid one looks like.

Conversation and message ids are UUIDs in canonical form (``str(uuid.uuid4())``, as the original's
message ids). Session ids are 16 to 128 URL-safe characters (``secrets.token_urlsafe``); they are
bearer secrets, so error messages never echo them. Every id is checked before it reaches a backend:
a malformed one is an `InvalidId`, never a backend error.
"""

from __future__ import annotations

import re
import secrets
import uuid

from chatstream.conversations.errors import InvalidId

_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{16,128}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
UUID_EXAMPLE = "0f8fad5b-d9cb-469f-a165-70867728950e"


def new_session_id() -> str:
    return secrets.token_urlsafe(24)


def new_conversation_id() -> str:
    return str(uuid.uuid4())


def new_message_id() -> str:
    return str(uuid.uuid4())


def is_uuid(value: object) -> bool:
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


def check_session_id(value: object) -> str:
    if not isinstance(value, str) or _SESSION_ID.fullmatch(value) is None:
        # The session id is never echoed: it may be a real one with a typo.
        raise InvalidId("session_id", "<hidden>" if isinstance(value, str) else value,
                        "16 to 128 characters of A-Z a-z 0-9 _ -")
    return value


def check_conversation_id(value: object, field: str = "conversation_id") -> str:
    if not is_uuid(value):
        raise InvalidId(field, value, f"a lowercase UUID like {UUID_EXAMPLE}")
    return value  # type: ignore[return-value]  # is_uuid proved it is a str


def check_message_id(value: object, field: str = "message_id") -> str:
    if not is_uuid(value):
        raise InvalidId(field, value, f"a lowercase UUID like {UUID_EXAMPLE}")
    return value  # type: ignore[return-value]
