"""The `chatstream` logger: one handler for any number of ChatStreams, a short request id on each
line, and the queue trace at DEBUG."""

from __future__ import annotations

import io
import logging

from fastapi import FastAPI

from chatstream import ChatPromptTogetherRedPajamaINCITEChat, ChatStream
from chatstream.facade.chat_logging import LOG_FORMAT, LOGGER_NAME, RequestLabelFilter
from live_server import LiveServer, read_chat_stream, session_client


def test_debug_shows_the_queue_trace_with_short_request_ids():
    first = ChatStream(use_mock_response=True, chat_prompt_clazz=ChatPromptTogetherRedPajamaINCITEChat,
                       mock_params={"type": "echo", "time_per_token_sec": 0})
    second = ChatStream(use_mock_response=True, chat_prompt_clazz=ChatPromptTogetherRedPajamaINCITEChat)
    assert first.logger is second.logger is logging.getLogger(LOGGER_NAME)
    assert sum(getattr(h, "_chatstream_handler", False) for h in first.logger.handlers) == 1  # no duplicates
    # Our handler writes to the stderr of its creation time; read the same records through a
    # handler of the same format and filter on a buffer.
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RequestLabelFilter())
    first.logger.addHandler(handler)
    first.logger.setLevel(logging.DEBUG)
    try:
        app = FastAPI()
        first.append_middlewares(app)
        first.append_apis(app, {"include": ["chat_stream"]})
        with LiveServer(app) as server, session_client(server.url) as client:
            assert read_chat_stream(client.post("/chat_stream", json={"user_input": "hi there"}))[-1] == "hi there"
    finally:
        first.logger.setLevel(logging.NOTSET)
        first.logger.removeHandler(handler)
    err = buffer.getvalue()
    lines = [line for line in err.splitlines() if "[chatstream][DEBUG][req_id_" in line]
    assert any("admitted: 1 running, 0 waiting" in line for line in lines), err
    assert any("finished: success" in line for line in lines), err
    labels = {line.split("[req_id_", 1)[1].split("]", 1)[0] for line in lines}
    assert len(labels) == 1 and len(labels.pop()) == 4  # one conversation, one short id
