"""The original ChatStream 0.3.0's module path `chatstream.chat_prompt_presets.chat_prompt_openlmresearch_open_llama`, kept so code written for it imports unchanged.
"""

from chatstream.chat_prompt.presets.open_llama import ChatPromptOpenlmrOpenLlama

__all__ = ["ChatPromptOpenlmrOpenLlama"]
