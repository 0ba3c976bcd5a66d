"""How the `chatstream` commands log: one handler on stderr, as text or as JSON lines.

The command owns its process, so it configures logging once: the root logger (uvicorn's and the
libraries' records propagate to it) and the `chatstream` logger, which the ChatStream facade would
otherwise give a handler of its own (`facade.chat_logging`). Both get the same handler, so every
line of a server has one format. `--log-format json` writes one JSON object per line with `time`,
`level`, `logger`, `message`, the request label `req_id`, and any extra fields of the record (the
start-up phases add `phase`, `event` and `seconds`).
"""

from __future__ import annotations

import logging
import os
import sys

from chatstream.facade.chat_logging import LOG_FORMAT, LOGGER_NAME, RequestLabelFilter
from chatstream.startup import stderr_is_terminal

LOG_FORMATS = ("text", "json")


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s %(req_id)s",
                             rename_fields={"asctime": "time", "levelname": "level", "name": "logger"})
    return logging.Formatter(LOG_FORMAT)


def no_bars_in_logs() -> None:
    """When stderr is a log and not a terminal, no library draws progress bars into it (tqdm's
    `TQDM_DISABLE`, read when tqdm is imported: call this before anything imports it). The
    start-up phases write plain lines instead."""
    if not stderr_is_terminal():
        os.environ.setdefault("TQDM_DISABLE", "1")


def configure_logging(level: str = "INFO", log_format: str = "text") -> logging.Handler:
    """Send every log record of this process to stderr in `log_format` ("text" or "json")."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, got {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(log_format))
    handler.addFilter(RequestLabelFilter())
    handler._chatstream_handler = True  # type: ignore[attr-defined] - the facade then adds none of its own
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    package = logging.getLogger(LOGGER_NAME)
    package.handlers = [handler]
    package.propagate = False
    logging.captureWarnings(True)  # Python warnings become records in the same format
    return handler


def quiet_library_bars() -> None:
    """For commands that load a model: transformers draws its own "Loading weights" bar beside
    ours; on a terminal they fight over the line, in a log it is a stream of fragments. The start-up
    phases report the load instead. (Downloads keep their bars.)"""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()
