"""`chatstream serve`'s app (`create_app`, every middleware) over a tiny random model, on a real
uvicorn server: for the tests of what the server does with bad, big, slow or hostile requests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from chatstream.http.app import ServerConfig, create_app
from live_server import LiveServer

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
CHAT_STREAM_OPTIONS = {"num_kv_blocks": 64, "num_of_concurrent_executions": 2, "max_queue_size": 4,
                       "max_new_tokens": 8, "temperature": 0.0, "context_len": None}


def tiny_app(tiny_model_factory: Any, family: str = "llama", **config: Any) -> FastAPI:
    model, tokenizer = tiny_model_factory(family)
    tokenizer.chat_template = TEMPLATE  # the tiny tokenizer ships none
    options = {**CHAT_STREAM_OPTIONS, **config.pop("chat_stream_options", {})}
    return create_app(ServerConfig(model=model, tokenizer=tokenizer, chat_prompt="chat_template", model_name="tiny",
                                   chat_stream_options=options, **config))


def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(url + "/health").status_code != 200:
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.05)


@contextmanager
def tiny_server(tiny_model_factory: Any, server_options: dict[str, Any] | None = None,
                **config: Any) -> Iterator[tuple[LiveServer, FastAPI]]:
    """A ready server; `config` are `ServerConfig` fields, `server_options` go to `LiveServer`."""
    app = tiny_app(tiny_model_factory, **config)
    with LiveServer(app, **(server_options or {})) as server:
        wait_ready(server.url)
        yield server, app
