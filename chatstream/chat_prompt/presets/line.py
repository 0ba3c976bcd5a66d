"""Preset for line-corporation/japanese-large-lm-3.6b-instruction-sft (and the 1.7b sibling).

Shape: `ユーザー: Q1⏎システム: A1⏎ユーザー: Q2⏎システム: `. (The reference left out the newline after replies, gluing
the next `ユーザー:` onto the answer.) The text that opens a new user turn is a stop string.
"""

from __future__ import annotations

from chatstream.chat_prompt.presets.role_lines import RoleLinesPrompt


class ChatPromptLineCorpJpLargeLmInstSft(RoleLinesPrompt):
    """LINE japanese-large-lm instruction-sft: `ユーザー` / `システム` lines."""

    chat_stop_strs = ()
    open_turn = "{role}: "  # this model expects the space after the colon

    def __init__(self) -> None:
        super().__init__()
        self.set_requester("ユーザー")
        self.set_responder("システム")
        self.set_prefix_as_stop_str_enabled(True)
