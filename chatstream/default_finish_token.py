"""The original ChatStream 0.3.0's module path `chatstream.default_finish_token`, kept so code written for it imports unchanged.
"""

from chatstream.facade.chat_output import DEFAULT_FINISH_TOKEN

__all__ = ["DEFAULT_FINISH_TOKEN"]
