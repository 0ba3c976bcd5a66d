"""The original ChatStream 0.3.0's module path `chatstream.chat_core`, kept so code written for it imports unchanged.

The original's `process_chat` (one request's forward passes, sampling and stop checks) is the engine now:
`chatstream.engine` batches every request's steps together, and `ChatGenerator` (`chatstream.chat_process`) turns a
ChatPrompt into an engine request and streams its reply.
"""

from chatstream.facade.chat_output import DEFAULT_FINISH_TOKEN

__all__ = ["DEFAULT_FINISH_TOKEN"]
