"""Preset for togethercomputer/RedPajama-INCITE-Chat-3B-v1 (and -7B-Chat).

Shape: `<human>: Q⏎<bot>: A⏎<human>: Q2⏎<bot>:`; the open turn is the role and a colon, no space. The model does not
always emit EOS, so the `<human>:` that would start a new user turn is a stop string too.
"""

from __future__ import annotations

from chatstream.chat_prompt.presets.role_lines import RoleLinesPrompt


class ChatPromptTogetherRedPajamaINCITEChat(RoleLinesPrompt):
    """RedPajama-INCITE-Chat: `<human>` / `<bot>` lines."""

    chat_stop_strs = ("<|endoftext|>",)

    def __init__(self) -> None:
        super().__init__()
        self.set_requester("<human>")
        self.set_responder("<bot>")
        self.set_prefix_as_stop_str_enabled(True)
