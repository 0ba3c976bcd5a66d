"""Preset for databricks/dolly-v2-3b and dolly-v2-7b (the Dolly instruction format).

Shape: `{intro}⏎⏎### Instruction:⏎Q1⏎⏎### Response:⏎A1⏎⏎### Instruction:⏎Q2⏎⏎### Response:⏎`. Child messages become
Dolly's context section, `Input:⏎{child}⏎⏎`, after the instruction. A new `### Instruction:` header ends the answer.
"""

from __future__ import annotations

from chatstream.chat_prompt.presets.instruction_sections import InstructionSectionsPrompt

DOLLY_INTRO = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
)


class ChatPromptDatabricksDolly(InstructionSectionsPrompt):
    """Dolly-v2: `### Instruction:` / `### Response:` sections, multi-turn."""

    def __init__(self) -> None:
        super().__init__()
        self.set_system(DOLLY_INTRO)
        self.set_requester("Instruction")
        self.set_responder("Response")
        self.set_prefix_as_stop_str_enabled(True)
