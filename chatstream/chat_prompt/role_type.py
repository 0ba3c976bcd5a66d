"""Who spoke a turn of a chat history.

This module owns `RoleType`. Role *names* ("<human>", "ユーザー", "") are free text chosen per model and may even
be empty for both sides (Llama-2), so each turn also records which side it belongs to.
"""

from __future__ import annotations

from enum import Enum, auto


class RoleType(Enum):
    """The side a `ChatContent` belongs to: the user (REQUESTER) or the model (RESPONDER).

    The values are the original's (1, 2, 3); records store the member's name ("REQUESTER")."""

    REQUESTER = auto()
    RESPONDER = auto()
    UNKNOWN = auto()
