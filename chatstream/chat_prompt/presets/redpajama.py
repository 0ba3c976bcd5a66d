"""Preset for togethercomputer/RedPajama-INCITE-Chat-3B-v1 (and -7B-Chat).

Shape: `<human>: Q⏎<bot>: A⏎<human>: Q2⏎<bot>:`; the open turn is the role and a colon, no space. The model does not
always emit EOS, so the `<human>:` that would start a new user turn is a stop string too.
"""

from __future__ import annotations

from typing import Any

from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.presets._common import merged_message, passthrough_prompt


class ChatPromptTogetherRedPajamaINCITEChat(AbstractChatPrompt):
    """RedPajama-INCITE-Chat: `<human>` / `<bot>` lines."""

    chat_stop_strs = ("<|endoftext|>",)

    def __init__(self) -> None:
        super().__init__()
        self.set_requester("<human>")
        self.set_responder("<bot>")
        self.set_prefix_as_stop_str_enabled(True)

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
