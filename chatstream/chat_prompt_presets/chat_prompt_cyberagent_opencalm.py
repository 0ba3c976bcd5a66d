"""The original ChatStream 0.3.0's module path `chatstream.chat_prompt_presets.chat_prompt_cyberagent_opencalm`, kept so code written for it imports unchanged.
"""

from chatstream.chat_prompt.presets.open_calm import ChatPromptCyberAgentOpenCalm

__all__ = ["ChatPromptCyberAgentOpenCalm"]
