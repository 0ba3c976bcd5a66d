"""Preset for openlm-research/open_llama_3b_v2 (a base model, prompted as a Q&A scene).

Shape: `Q: Q1⏎A: A1⏎Q: Q2⏎A:`. A base model keeps inventing further lines, so a new line starting with "Q:" (or the
"B:"/"C:" it sometimes drifts into) ends the answer.
"""

from __future__ import annotations

from chatstream.chat_prompt.presets.role_lines import RoleLinesPrompt


class ChatPromptOpenlmrOpenLlama(RoleLinesPrompt):
    """OpenLLaMA as `Q:` / `A:` lines."""

    chat_stop_strs = ("\nQ:", "\nB:", "\nC:")

    def __init__(self) -> None:
        super().__init__()
        self.set_requester("Q")
        self.set_responder("A")
