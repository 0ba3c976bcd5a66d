"""`chatstream serve` apps for the conversation tests: `create_app` in this process (a tiny model or
the generator mock, any store URL) behind a real uvicorn, ready when /health says so."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from chatstream import ChatPromptChatTemplate, ChatPromptTogetherRedPajamaINCITEChat
from chatstream.http.app import ServerConfig, create_app
from live_server import LiveServer

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|endoftext|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def wait_ready(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while httpx.get(url + "/health").status_code != 200:
        assert time.monotonic() < deadline, httpx.get(url + "/health").text
        time.sleep(0.05)


@contextmanager
def mock_server(store_url: str, **options: Any) -> Iterator[LiveServer]:
    """The generator mock (`echo`) behind the whole server app, conversations in `store_url`."""
    chat_stream_options = {"use_mock_response": True, "mock_params": {"type": "echo", "time_per_token_sec": 0.002},
                           **options}
    app = create_app(ServerConfig(chat_prompt=ChatPromptTogetherRedPajamaINCITEChat, conversation_store=store_url,
                                  chat_stream_options=chat_stream_options))
    with LiveServer(app) as live:
        wait_ready(live.url)
        yield live


@contextmanager
def tiny_server(tiny_model_factory: Any, store_url: str, **options: Any) -> Iterator[LiveServer]:
    """A tiny random model (so /v1 serves too) behind the whole server app."""
    model, tokenizer = tiny_model_factory("llama")
    tokenizer.chat_template = CHATML
    chat_stream_options = {"num_kv_blocks": 64, "max_new_tokens": 8, "temperature": 0.0, **options}
    app = create_app(ServerConfig(model=model, tokenizer=tokenizer, chat_prompt=ChatPromptChatTemplate,
                                  model_name="tiny", conversation_store=store_url,
                                  chat_stream_options=chat_stream_options))
    with LiveServer(app) as live:
        wait_ready(live.url)
        yield live
