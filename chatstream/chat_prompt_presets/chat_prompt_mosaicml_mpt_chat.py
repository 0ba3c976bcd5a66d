"""The original ChatStream 0.3.0's module path `chatstream.chat_prompt_presets.chat_prompt_mosaicml_mpt_chat`, kept so code written for it imports unchanged.
"""

from chatstream.chat_prompt.presets.mosaicml_mpt import ChatPromptMosaicmlMptChat

__all__ = ["ChatPromptMosaicmlMptChat"]
