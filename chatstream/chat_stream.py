"""The original ChatStream's module path `chatstream.chat_stream`, kept so code written for it
imports unchanged. A thin re-export: `ChatStream` lives in `chatstream.facade.chat_stream`."""

from chatstream.facade.chat_stream import ChatStream

__all__ = ["ChatStream"]
