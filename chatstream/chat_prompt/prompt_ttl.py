"""How much of the history a prompt keeps.

This module owns `PromptTTL`: MULTI_TURN renders the whole history, SINGLE_TURN only the last exchange (one
question, one answer), for task-style prompts such as "translate this" where earlier turns would only distract.
"""

from __future__ import annotations

from enum import Enum


class PromptTTL(Enum):
    """Lifetime of a turn inside the prompt."""

    MULTI_TURN = "multi_turn"
    SINGLE_TURN = "single_turn"
