"""The original ChatStream 0.3.0's module path `chatstream.chat_prompt_presets.chat_prompt_rinna_gpt_neox`, kept so code written for it imports unchanged.
"""

from chatstream.chat_prompt.presets.rinna import ChatPromptRinnaJapaneseGPTNeoxInst, ChatPromptRinnaJpGptNeoxInstSft

__all__ = ["ChatPromptRinnaJapaneseGPTNeoxInst", "ChatPromptRinnaJpGptNeoxInstSft"]
