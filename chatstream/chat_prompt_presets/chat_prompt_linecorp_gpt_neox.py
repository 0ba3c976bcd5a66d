"""The original ChatStream 0.3.0's module path `chatstream.chat_prompt_presets.chat_prompt_linecorp_gpt_neox`, kept so code written for it imports unchanged.
"""

from chatstream.chat_prompt.presets.line import ChatPromptLineCorpJpLargeLmInstSft

__all__ = ["ChatPromptLineCorpJpLargeLmInstSft"]
