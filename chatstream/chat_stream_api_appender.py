"""The original ChatStream 0.3.0's module path `chatstream.chat_stream_api_appender`, kept so code written for it imports unchanged.

`append_apis(chat_stream, app, opts, logger, eloc)` with the original's arguments: the same as
`chat_stream.append_apis(app, opts)` (the logger and locale are the ChatStream's own).
"""

from typing import Any

from chatstream.facade.chat_stream import ChatStream


def append_apis(chat_stream: ChatStream, app: Any, opts: dict[str, Any] | None = None, logger: Any = None,
                eloc: Any = None) -> None:
    chat_stream.append_apis(app, opts)


__all__ = ["append_apis"]
