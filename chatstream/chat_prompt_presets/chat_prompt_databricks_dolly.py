"""The original ChatStream 0.3.0's module path `chatstream.chat_prompt_presets.chat_prompt_databricks_dolly`, kept so code written for it imports unchanged.
"""

from chatstream.chat_prompt.presets.dolly import ChatPromptDatabricksDolly

__all__ = ["ChatPromptDatabricksDolly"]
