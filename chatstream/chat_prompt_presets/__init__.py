"""The original ChatStream 0.3.0's module path `chatstream.chat_prompt_presets`, kept so code written for it imports unchanged.

The presets live in `chatstream.chat_prompt.presets`, one module per family; each module here re-exports one.
"""
