"""The one-line-per-turn format shared by RedPajama, OpenLLaMA and LINE presets.

`{system}` then `{role}: {message}⏎` per turn (a user turn's child messages on the lines after
it); the open turn is `open_turn`, the role and a colon, with or without the trailing space the
model expects. The presets differ only in roles, stop strings and that space.
"""

from __future__ import annotations

from typing import Any

from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.presets._common import merged_message, passthrough_prompt


class RoleLinesPrompt(AbstractChatPrompt):
    """`{role}: {message}⏎` lines; the open turn renders as `open_turn`."""

    open_turn = "{role}:"

    def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
        if not self.chat_mode:
            return passthrough_prompt(self)
        parts = [self.system]
        for content in self.get_contents(opts):
            message = merged_message(content, "\n")
            if message is None:
                parts.append(self.open_turn.format(role=content.get_role()))
            else:
                parts.append(f"{content.get_role()}: {message}\n")
        return "".join(parts)
