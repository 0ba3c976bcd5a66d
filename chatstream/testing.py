"""Test helpers for apps built on ChatStream: record a real model's replies once, replay them
anywhere (Transformer Mock).

A recording holds what the model produced at every step (see `chatstream.mock.recording`). A
ChatStream built by `replay_chat_stream` serves it through the real engine, ChatPrompt, sampler,
stop strings, streaming, queueing and HTTP layers, with no weights and no GPU, and gives the
recorded tokens exactly, whatever the machine, the order or the batching of the requests. A
request that leaves the recorded paths (a changed prompt) fails with `ReplayDivergence`, which
names the request, the step and the expected and actual tokens.

    recording = ensure_recording("tests/recordings/greeting", model="path/to/model",
                                 conversations=[["Hello!", "And how are you?"]])
    chat_stream = replay_chat_stream(recording)

See docs/testing-with-recordings.md for a pytest example.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chatstream.facade.chat_stream import ChatStream


def _default_prompt_class() -> type:
    from chatstream.chat_prompt import ChatPromptChatTemplate

    return ChatPromptChatTemplate


async def run_conversation(chat_stream: ChatStream, user_messages: Sequence[str]) -> list[str]:
    """Send the messages as one new console conversation; returns the replies, in order."""
    chat_stream.clear_console_context()
    replies = []
    for message in user_messages:
        reply = ""
        async for response_text, _updated, _pos in chat_stream.handle_console_input(message):
            reply = response_text
        replies.append(reply.removesuffix("<::EOS::>"))
    return replies


def run_conversations(chat_stream: ChatStream, conversations: Sequence[Sequence[str]]) -> list[list[str]]:
    """`run_conversation` for each conversation, from synchronous code."""

    async def run_all() -> list[list[str]]:
        return [await run_conversation(chat_stream, c) for c in conversations]

    return asyncio.run(run_all())


def record_conversations(model: Any, conversations: Sequence[Sequence[str]], record_to: str | Path | None = None,
                         *, tokenizer: Any = None, chat_prompt_clazz: type | None = None,
                         **chat_stream_options: Any) -> Path:
    """Run the conversations on a real model with recording on; returns the recording directory
    (`record_to`, or a new one under the cache dir)."""
    chat_stream = ChatStream(model=model, tokenizer=tokenizer,
                             chat_prompt_clazz=chat_prompt_clazz or _default_prompt_class(),
                             record_to=record_to or True, **chat_stream_options)
    try:
        run_conversations(chat_stream, conversations)
        assert chat_stream.recording_dir is not None  # record_to was given
        return chat_stream.recording_dir
    finally:
        chat_stream.shutdown()


def ensure_recording(dirname: str | Path, model: Any, conversations: Sequence[Sequence[str]],
                     **options: Any) -> Path:
    """The recording at `dirname`, made now (with the real model) only if it does not exist yet:
    record once on a machine that has the model, commit the directory, replay everywhere."""
    path = Path(dirname)
    if (path / "manifest.json").is_file():
        return path
    return record_conversations(model, conversations, path, **options)


def replay_chat_stream(recording_dir: str | Path, *, chat_prompt_clazz: type | None = None,
                       wait_sec: float | None = None, **chat_stream_options: Any) -> ChatStream:
    """A ChatStream that replays `recording_dir`: the original's MockTransformer wiring."""
    from chatstream.mock import MockTransformer

    mock = MockTransformer(str(recording_dir), wait_sec=wait_sec)
    return ChatStream(model=mock.get_model(), tokenizer=mock.get_tokenizer(), token_sampler=mock.get_token_sampler(),
                      chat_prompt_clazz=chat_prompt_clazz or _default_prompt_class(), **chat_stream_options)
