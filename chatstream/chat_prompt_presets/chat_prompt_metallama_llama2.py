"""The original ChatStream 0.3.0's module path `chatstream.chat_prompt_presets.chat_prompt_metallama_llama2`, kept so code written for it imports unchanged.
"""

from chatstream.chat_prompt.presets.llama2 import LLAMA2_DEFAULT_SYSTEM_PROMPT, ChatPromptMetaLlamaLlama2Chat

SYSTEM_PROMPT = LLAMA2_DEFAULT_SYSTEM_PROMPT

__all__ = ["SYSTEM_PROMPT", "ChatPromptMetaLlamaLlama2Chat"]
