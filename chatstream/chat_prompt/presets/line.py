"""Preset for line-corporation/japanese-large-lm-3.6b-instruction-sft (and the 1.7b sibling).

Shape: `ユーザー: Q1⏎システム: A1⏎ユーザー: Q2⏎システム: `. (The reference left out the newline after replies, gluing
the next `ユーザー:` onto the answer.) The text that opens a new user turn is a stop string.
"""

from __future__ import annotations

from typing import Any

from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.presets._common import merged_message, passthrough_prompt


class ChatPromptLineCorpJpLargeLmInstSft(AbstractChatPrompt):
    """LINE japanese-large-lm instruction-sft: `ユーザー` / `システム` lines."""

    chat_stop_strs = ()

    def __init__(self) -> None:
        super().__init__()
        self.set_requester("ユーザー")
        self.set_responder("システム")
        self.set_prefix_as_stop_str_enabled(True)

    def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
        if not self.chat_mode:
            return passthrough_prompt(self)
        parts = [self.system]
        for content in self.get_contents(opts):
            message = merged_message(content, "\n")
            if message is None:
                parts.append(f"{content.get_role()}: ")
            else:
                parts.append(f"{content.get_role()}: {message}\n")
        return "".join(parts)
