"""Preset for databricks/dolly-v2-3b and dolly-v2-7b (the Dolly instruction format).

Shape: `{intro}⏎⏎### Instruction:⏎Q1⏎⏎### Response:⏎A1⏎⏎### Instruction:⏎Q2⏎⏎### Response:⏎`. Child messages become
Dolly's context section, `Input:⏎{child}⏎⏎`, after the instruction. A new `### Instruction:` header ends the answer.
"""

from __future__ import annotations

from typing import Any

from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.presets._common import passthrough_prompt
from chatstream.chat_prompt.role_type import RoleType

DOLLY_INTRO = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
)


class ChatPromptDatabricksDolly(AbstractChatPrompt):
    """Dolly-v2: `### Instruction:` / `### Response:` sections, multi-turn."""

    def __init__(self) -> None:
        super().__init__()
        self.set_system(DOLLY_INTRO)
        self.set_requester("Instruction")
        self.set_responder("Response")
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
            header = f"### {content.get_role()}:\n"
            if message is None:
                parts.append(header)
                continue
            parts.append(f"{header}{message}\n\n")
            if content.get_role_type() == RoleType.REQUESTER:
                for child in content.get_child_messages():
                    parts.append(f"Input:\n{child}\n\n")
        return "".join(parts)
