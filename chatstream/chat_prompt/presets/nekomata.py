"""Preset for rinna/nekomata-14b-instruction: a translation task (Japanese to English) behind the chat UI.

One prompt class = one task: the instruction is fixed in the system text and each user message is the input to
translate, so the prompt is single-turn. Shape (rinna's Alpaca format):
`{system}⏎⏎### 指示:⏎次の日本語を英語に翻訳してください。⏎⏎### 入力:⏎{user}⏎⏎### 応答:⏎`.
"""

from __future__ import annotations

from typing import Any

from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.presets._common import merged_message, passthrough_prompt
from chatstream.chat_prompt.presets.stabilityai_jp import ALPACA_JA_SYSTEM_PROMPT
from chatstream.chat_prompt.prompt_ttl import PromptTTL

NEKOMATA_TRANSLATION_INSTRUCTION = "次の日本語を英語に翻訳してください。"


class ChatPromptRinnaNekomata(AbstractChatPrompt):
    """nekomata-14b-instruction as a Japanese-to-English translator, SINGLE_TURN."""

    chat_stop_strs = ("<|endoftext|>",)

    def __init__(self) -> None:
        super().__init__()
        self.set_system(f"{ALPACA_JA_SYSTEM_PROMPT}\n\n### 指示:\n{NEKOMATA_TRANSLATION_INSTRUCTION}")
        self.set_requester("入力")
        self.set_responder("応答")
        self.set_prompt_ttl(PromptTTL.SINGLE_TURN)

    def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
        if not self.chat_mode:
            return passthrough_prompt(self)
        parts = [f"{self.system}\n\n" if self.system else ""]
        for content in self.get_contents(opts):
            message = merged_message(content, "\n")
            parts.append(f"### {content.get_role()}:\n")
            if message is not None:
                parts.append(f"{message}\n\n")
        return "".join(parts)
