"""Preset for Rakuten/RakutenAI-7B-chat (Mistral-7B continually trained on Japanese).

The Vicuna-style format of the model card: `{system} USER: {u} ASSISTANT: {a}</s>USER: {u2} ASSISTANT:`. The prompt
has no `<s>`, so the tokenizer adds BOS as usual. "USER:" starting a new turn is a stop string.
"""

from __future__ import annotations

from typing import Any

from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.presets._common import merged_message, passthrough_prompt
from chatstream.chat_prompt.role_type import RoleType

RAKUTEN_SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


class ChatPromptRakutenMistral(AbstractChatPrompt):
    """RakutenAI-7B-chat: `USER:` / `ASSISTANT:` on one line, replies closed by `</s>`."""

    chat_stop_strs = ()

    def __init__(self) -> None:
        super().__init__()
        self.set_system(RAKUTEN_SYSTEM_PROMPT)
        self.set_requester("USER")
        self.set_responder("ASSISTANT")
        self.set_prefix_as_stop_str_enabled(True)

    def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
        if not self.chat_mode:
            return passthrough_prompt(self)
        parts = [f"{self.system} " if self.system else ""]
        for content in self.get_contents(opts):
            message = merged_message(content)
            if message is None:
                parts.append(f"{content.get_role()}:")
            elif content.get_role_type() == RoleType.RESPONDER:
                parts.append(f"{content.get_role()}: {message}</s>")
            else:
                parts.append(f"{content.get_role()}: {message} ")
        return "".join(parts)
