"""The instruction-sections format shared by Alpaca-style presets (Dolly, Japanese Alpaca).

A system text, then per turn a `### <role>:` header and the message, with a requester's child
messages as extra input sections after its instruction; the open turn is the bare header. The
presets differ only in their texts and in where the header's line break goes, so they set
`header` and `input_section` and inherit the rest.
"""

from __future__ import annotations

from typing import Any

from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.presets._common import passthrough_prompt
from chatstream.chat_prompt.role_type import RoleType


class InstructionSectionsPrompt(AbstractChatPrompt):
    """`{system}⏎⏎` + per turn `header` then `{message}⏎⏎`; `header` and `input_section` are
    format strings with `{role}` / `{child}`; `message_prefix` goes between header and message."""

    chat_stop_strs = ()

    header = "### {role}:\n"
    message_prefix = ""
    input_section = "Input:\n{child}\n\n"

    def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
        if not self.chat_mode:
            return passthrough_prompt(self)
        parts = [f"{self.system}\n\n" if self.system else ""]
        for content in self.get_contents(opts):
            message = content.get_message()
            header = self.header.format(role=content.get_role())
            if message is None:
                parts.append(header)
                continue
            parts.append(f"{header}{self.message_prefix}{message}\n\n")
            if content.get_role_type() == RoleType.REQUESTER:
                for child in content.get_child_messages():
                    parts.append(self.input_section.format(child=child))
        return "".join(parts)
