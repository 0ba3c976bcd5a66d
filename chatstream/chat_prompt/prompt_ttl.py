"""How much of the history a prompt keeps.

This module owns `PromptTTL`: MULTI_TURN renders the whole history, SINGLE_TURN only the last exchange (one
question, one answer), for task-style prompts such as "translate this" where earlier turns would only distract.
"""

from __future__ import annotations

from enum import Enum, auto


class PromptTTL(Enum):
    """Lifetime of a turn inside the prompt (values as in the original: 1, 2)."""

    MULTI_TURN = auto()
    SINGLE_TURN = auto()
