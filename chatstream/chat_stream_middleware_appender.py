"""The original ChatStream 0.3.0's module path `chatstream.chat_stream_middleware_appender`, kept so code written for it imports unchanged.

`append_middlewares(chat_stream, app, logger, eloc, opts=None)` with the original's arguments: the same as
`chat_stream.append_middlewares(app, opts)`.
"""

from typing import Any

from chatstream.facade.chat_stream import ChatStream


def append_middlewares(chat_stream: ChatStream, app: Any, logger: Any = None, eloc: Any = None,
                       opts: dict[str, Any] | None = None) -> None:
    chat_stream.append_middlewares(app, opts)


__all__ = ["append_middlewares"]
