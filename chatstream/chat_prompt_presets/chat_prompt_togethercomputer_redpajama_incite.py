"""The original ChatStream 0.3.0's module path `chatstream.chat_prompt_presets.chat_prompt_togethercomputer_redpajama_incite`, kept so code written for it imports unchanged.
"""

from chatstream.chat_prompt.presets.redpajama import ChatPromptTogetherRedPajamaINCITEChat

__all__ = ["ChatPromptTogetherRedPajamaINCITEChat"]
