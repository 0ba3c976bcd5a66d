"""Preset for lightblue/karasu-7B-chat-plus (ChatML).

Shape: `<|im_start|>system⏎{system}<|im_end|>⏎<|im_start|>user⏎Q<|im_end|>⏎<|im_start|>assistant⏎A<|im_end|>⏎…
<|im_start|>assistant⏎`. A reply ends with `<|im_end|>`: a stop token, and also a stop string in case the tokenizer
splits it into ordinary pieces (then it would appear in the decoded text).
"""

from __future__ import annotations

from typing import Any

from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.presets._common import merged_message, passthrough_prompt

KARASU_SYSTEM_PROMPT = "あなたはAIアシスタントです。"


class ChatPromptLightblueKarasuChatPlus(AbstractChatPrompt):
    """karasu-7B-chat-plus in ChatML."""

    chat_stop_strs = ("<|im_end|>",)

    def __init__(self) -> None:
        super().__init__()
        self.set_system(KARASU_SYSTEM_PROMPT)
        self.set_requester("user")
        self.set_responder("assistant")

    def get_stop_tokens(self) -> list[str]:
        return ["<|im_end|>"]

    def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
        if not self.chat_mode:
            return passthrough_prompt(self)
        parts = [f"<|im_start|>system\n{self.system}<|im_end|>\n" if self.system else ""]
        for content in self.get_contents(opts):
            message = merged_message(content)
            parts.append(f"<|im_start|>{content.get_role()}\n")
            if message is not None:
                parts.append(f"{message}<|im_end|>\n")
        return "".join(parts)
