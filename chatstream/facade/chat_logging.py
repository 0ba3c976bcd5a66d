"""The `chatstream` logger: one handler, and a short request id on every line.

The facade sets `request_label` (e.g. `req_id_3f2a`, from the end of the session id) while it
handles a request; a filter on our handler copies it into each record, so log lines of one
conversation can be followed even when many interleave. `chat_stream.logger.setLevel(DEBUG)`
shows the queue trace. The handler is added once per process, not once per ChatStream (the
original duplicated every line for each instance).
"""

from __future__ import annotations

import logging
import uuid
from contextvars import ContextVar

LOGGER_NAME = "chatstream"
LOG_FORMAT = "%(asctime)s [%(name)s][%(levelname)s][%(req_id)s] %(message)s"

request_label: ContextVar[str] = ContextVar("chatstream_request_label", default="-")


class RequestLabelFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.req_id = request_label.get()
        return True


def chat_logger(logger: logging.Logger | None = None) -> logging.Logger:
    """The given logger, or the package logger with our handler attached (once)."""
    if logger is not None:
        return logger
    logger = logging.getLogger(LOGGER_NAME)
    if not any(getattr(h, "_chatstream_handler", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(RequestLabelFilter())
        handler._chatstream_handler = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False  # our handler prints it; a root handler would print it twice
    return logger


def label_for(session_id: str | None) -> str:
    """The short request id the original printed: the session id's last 4 characters."""
    if session_id:
        return f"req_id_{str(session_id)[-4:]}"
    return f"req_id_NOSESSION_{uuid.uuid4().hex[:4]}"
