"""Preset for rinna/japanese-gpt-neox-3.6b-instruction-sft (also used for -ppo).

Shape: `ユーザー: Q<NL>システム: A<NL>ユーザー: Q2<NL>システム: `. The model writes line breaks as the literal text
"<NL>", so user input has newlines replaced on the way in and the output has "<NL>" replaced on the way out.
rinna's examples tokenize with `add_special_tokens=False` and the slow tokenizer (`use_fast=False`).
"""

from __future__ import annotations

from typing import Any

from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.chat_history import ReplacementPairs, apply_replacements
from chatstream.chat_prompt.presets._common import merged_message, passthrough_prompt


class ChatPromptRinnaJpGptNeoxInstSft(AbstractChatPrompt):
    """rinna japanese-gpt-neox instruction-sft: `ユーザー` / `システム` turns separated by `<NL>`."""

    chat_stop_strs = ()

    def __init__(self) -> None:
        super().__init__()
        self.set_requester("ユーザー")
        self.set_responder("システム")

    def get_replacement_when_input(self) -> ReplacementPairs | None:
        return [("\n", "<NL>")]

    def get_replacement_when_output(self) -> ReplacementPairs | None:
        return [("<NL>", "\n")]

    def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
        if not self.chat_mode:
            return passthrough_prompt(self)
        pairs = self.get_replacement_when_input()
        parts = [self.system]
        for content in self.get_contents(opts):
            # Replies enter the history after output replacement (with real newlines); re-encode them here.
            # The replacement is idempotent, so already-encoded user input is unaffected.
            message = apply_replacements(merged_message(content, "\n"), pairs)
            if message is None:
                parts.append(f"{content.get_role()}: ")
            else:
                parts.append(f"{content.get_role()}: {message}<NL>")
        return "".join(parts)


# The name this class had in the reference's repository.
ChatPromptRinnaJapaneseGPTNeoxInst = ChatPromptRinnaJpGptNeoxInstSft
