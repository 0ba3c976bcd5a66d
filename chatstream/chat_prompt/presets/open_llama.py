"""Preset for openlm-research/open_llama_3b_v2 (a base model, prompted as a Q&A scene).

Shape: `Q: Q1⏎A: A1⏎Q: Q2⏎A:`. A base model keeps inventing further lines, so a new line starting with "Q:" (or the
"B:"/"C:" it sometimes drifts into) ends the answer.
"""

from __future__ import annotations

from typing import Any

from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.presets._common import merged_message, passthrough_prompt


class ChatPromptOpenlmrOpenLlama(AbstractChatPrompt):
    """OpenLLaMA as `Q:` / `A:` lines."""

    chat_stop_strs = ("\nQ:", "\nB:", "\nC:")

    def __init__(self) -> None:
        super().__init__()
        self.set_requester("Q")
        self.set_responder("A")

    def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
        if not self.chat_mode:
            return passthrough_prompt(self)
        parts = [self.system]
        for content in self.get_contents(opts):
            message = merged_message(content, "\n")
            if message is None:
                parts.append(f"{content.get_role()}:")
            else:
                parts.append(f"{content.get_role()}: {message}\n")
        return "".join(parts)
