"""Preset for cyberagent/open-calm-7b and open-calm-3b, plain completion models.

Same shape as the Stockmark preset (the messages concatenated, nothing added for the open turn); the reference
gives it no stop strings at all (None).
"""

from __future__ import annotations

from chatstream.chat_prompt.presets.stockmark import ChatPromptStockmarkGptNeoxJp


class ChatPromptCyberAgentOpenCalm(ChatPromptStockmarkGptNeoxJp):
    """OpenCALM: plain concatenation of the history."""

    chat_stop_strs = None  # the reference gives none, in either mode

