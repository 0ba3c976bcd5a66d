"""Who spoke a turn of a chat history.

This module owns `RoleType`. Role *names* ("<human>", "ユーザー", "") are free text chosen per model and may even
be empty for both sides (Llama-2), so each turn also records which side it belongs to.
"""

from __future__ import annotations

from enum import Enum


class RoleType(Enum):
    """The side a `ChatContent` belongs to: the user (REQUESTER) or the model (RESPONDER)."""

    REQUESTER = "requester"
    RESPONDER = "responder"
    UNKNOWN = "unknown"
