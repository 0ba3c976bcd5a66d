"""Preset for matsuo-lab/weblab-10b-instruction-sft.

The reference renders it in the same Japanese Alpaca shape as the StabilityAI preset, but single-turn (only the
last question is sent), and also stops at "Q:", which the model tends to start a new question with.
"""

from __future__ import annotations

from chatstream.chat_prompt.presets.stabilityai_jp import ChatPromptStabilityAiJpGptNeoxInstSft
from chatstream.chat_prompt.prompt_ttl import PromptTTL


class ChatPromptMatsuoLabJpGptNeoxInstSft(ChatPromptStabilityAiJpGptNeoxInstSft):
    """Japanese Alpaca, SINGLE_TURN."""

    chat_stop_strs = ("Q:",)

    def __init__(self) -> None:
        super().__init__()
        self.set_prompt_ttl(PromptTTL.SINGLE_TURN)

