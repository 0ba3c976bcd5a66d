"""Preset for stockmark/gpt-neox-japanese-1.4b, a plain (non-instruction) completion model.

Shape: the messages concatenated with no roles or separators: `Q1A1Q2`. The open turn adds nothing, so the model
simply continues the text (the reference repeated the previous message there, giving `Q2Q2`).
"""

from __future__ import annotations

from typing import Any

from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.presets._common import merged_message, passthrough_prompt


class ChatPromptStockmarkGptNeoxJp(AbstractChatPrompt):
    """Plain concatenation of the history."""

    chat_stop_strs = ()

    def __init__(self) -> None:
        super().__init__()
        self.set_requester("")
        self.set_responder("")

    def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
        if not self.chat_mode:
            return passthrough_prompt(self)
        parts = [self.system]
        for content in self.get_contents(opts):
            message = merged_message(content, "\n")
            if message is not None:
                parts.append(message)
        return "".join(parts)
