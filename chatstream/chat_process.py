"""The original ChatStream 0.3.0's module path `chatstream.chat_process`, kept so code written for it imports unchanged.

`ChatGenerator` streams a ChatPrompt's reply from the engine (`generate(chat_prompt, opts)` with the original's
options); ChatStream builds it.
"""

from chatstream.facade.chat_generator import ChatGenerator

__all__ = ["ChatGenerator"]
