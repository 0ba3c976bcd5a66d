"""Preset for meta-llama/Meta-Llama-3-8B-Instruct (and the other Llama-3 instruct models).

The official header format: `<|begin_of_text|>`, then per turn
`<|start_header_id|>{role}<|end_header_id|>⏎⏎{text}<|eot_id|>`, ending with the open assistant header. Each turn
ends with the special token `<|eot_id|>`, which decoding skips, so it stops generation as a token, not a string.
"""

from __future__ import annotations

from typing import Any

from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.presets._common import merged_message, passthrough_prompt
from chatstream.chat_prompt.presets.llama2 import LLAMA2_DEFAULT_SYSTEM_PROMPT


def _header(role: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n"


class ChatPromptMetaLlamaLlama3Instruct(AbstractChatPrompt):
    """Llama-3-Instruct header format; the system turn is left out when the system text is empty."""

    chat_stop_strs = ()

    def __init__(self) -> None:
        super().__init__()
        self.set_system(LLAMA2_DEFAULT_SYSTEM_PROMPT)
        self.set_requester("user")
        self.set_responder("assistant")

    def get_stop_tokens(self) -> list[str]:
        return ["<|eot_id|>"]

    def get_add_special_tokens(self) -> bool | None:
        # The prompt starts with <|begin_of_text|>; letting the tokenizer add it again would double it.
        return False if self.chat_mode else None

    def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
        if not self.chat_mode:
            return passthrough_prompt(self)
        parts = ["<|begin_of_text|>"]
        if self.system:
            parts.append(f"{_header('system')}{self.system}<|eot_id|>")
        for content in self.get_contents(opts):
            message = merged_message(content)
            parts.append(_header(content.get_role()))
            if message is not None:
                parts.append(f"{message}<|eot_id|>")
        return "".join(parts)
