"""Preset for stabilityai/japanese-stablelm-instruct-alpha-7b (the Japanese Alpaca format).

Shape: `{system}⏎⏎### 指示: ⏎Q1⏎⏎### 応答: ⏎A1⏎⏎### 指示: ⏎Q2⏎⏎### 応答: `. Each child message of a user turn becomes
a `### 入力: ⏎{child}⏎⏎` section after the instruction. The header that opens a new instruction is a stop string.
"""

from __future__ import annotations

from typing import Any

from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.presets._common import passthrough_prompt
from chatstream.chat_prompt.role_type import RoleType

ALPACA_JA_SYSTEM_PROMPT = (
    "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。"
)


class ChatPromptStabilityAiJpGptNeoxInstSft(AbstractChatPrompt):
    """Japanese Alpaca: `### 指示:` / `### 入力:` / `### 応答:` sections, multi-turn."""

    def __init__(self) -> None:
        super().__init__()
        self.set_system(ALPACA_JA_SYSTEM_PROMPT)
        self.set_requester("指示")
        self.set_responder("応答")
        self.set_prefix_as_stop_str_enabled(True)

    def get_stop_strs(self) -> list[str] | None:
        if not self.chat_mode:
            return None
        return []

    def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
        if not self.chat_mode:
            return passthrough_prompt(self)
        parts = [f"{self.system}\n\n" if self.system else ""]
        for content in self.get_contents(opts):
            message = content.get_message()
            header = f"### {content.get_role()}: "
            if message is None:
                parts.append(header)
                continue
            parts.append(f"{header}\n{message}\n\n")
            if content.get_role_type() == RoleType.REQUESTER:
                for child in content.get_child_messages():
                    parts.append(f"### 入力: \n{child}\n\n")
        return "".join(parts)
