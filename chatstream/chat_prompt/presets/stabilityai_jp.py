"""Preset for stabilityai/japanese-stablelm-instruct-alpha-7b (the Japanese Alpaca format).

Shape: `{system}⏎⏎### 指示: ⏎Q1⏎⏎### 応答: ⏎A1⏎⏎### 指示: ⏎Q2⏎⏎### 応答: `. Each child message of a user turn becomes
a `### 入力: ⏎{child}⏎⏎` section after the instruction. The header that opens a new instruction is a stop string.
"""

from __future__ import annotations

from chatstream.chat_prompt.presets.instruction_sections import InstructionSectionsPrompt

ALPACA_JA_SYSTEM_PROMPT = (
    "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。"
)


class ChatPromptStabilityAiJpGptNeoxInstSft(InstructionSectionsPrompt):
    """Japanese Alpaca: `### 指示:` / `### 入力:` / `### 応答:` sections, multi-turn."""

    header = "### {role}: "
    message_prefix = "\n"
    input_section = "### 入力: \n{child}\n\n"

    def __init__(self) -> None:
        super().__init__()
        self.set_system(ALPACA_JA_SYSTEM_PROMPT)
        self.set_requester("指示")
        self.set_responder("応答")
        self.set_prefix_as_stop_str_enabled(True)
