"""Tests for chatstream.facade.generator_mock: reply choice per type, English and Japanese tokenization, the three
output types, the configured waits (recorded, never measured), partial history on early stop, cancellation,
parameter validation, and an import free of torch."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

from chatstream.facade.chat_output import DEFAULT_FINISH_TOKEN
from chatstream.mock import MockChatGenerator
from chatstream.facade import generator_mock
from chatstream.facade.generator_mock import LONG_REPLY, ROUND_REPLIES, is_japanese, tokenize


class FakePrompt:
    """The four AbstractChatPrompt methods a chat generator uses."""

    def __init__(self, user_msg: str | None = "hello", turn: int = 1) -> None:
        self.user_msg = user_msg
        self.turn = turn
        self.history: list[str] = []  # every set_responder_last_msg value, in order
        self.msg_id: str | None = None

    def get_requester_last_msg(self) -> str | None:
        return self.user_msg

    def get_turn(self) -> int:
        return self.turn

    def set_responder_last_msg(self, text: str) -> None:
        self.history.append(text)

    def set_responder_last_msg_id(self, msg_id: str) -> None:
        self.msg_id = msg_id

    @property
    def reply(self) -> str | None:
        return self.history[-1] if self.history else None


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Records every requested sleep and returns at once (still yielding to the event loop)."""
    recorded: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(generator_mock.asyncio, "sleep", fake_sleep)
    return recorded


def collect(gen: MockChatGenerator, prompt: FakePrompt, opts: dict[str, Any] | None = None) -> list[Any]:
    async def run() -> list[Any]:
        return [chunk async for chunk in gen.generate(prompt, opts)]

    return asyncio.run(run())


def test_default_is_round_and_rotates_with_the_turn(sleeps: list[float]) -> None:
    for params in (None, {}, {"type": None}, {"time_per_token_sec": 0}):
        prompt = FakePrompt(turn=1)
        chunks = collect(MockChatGenerator(params), prompt)
        assert prompt.reply == ROUND_REPLIES[0] and prompt.reply.startswith("(1) ")
        assert chunks[-1] == ROUND_REPLIES[0] + DEFAULT_FINISH_TOKEN
    gen = MockChatGenerator({"type": "round"})
    for turn, expected in ((2, 1), (12, 11), (13, 0), (26, 1)):
        prompt = FakePrompt(turn=turn)
        collect(gen, prompt)
        assert prompt.reply == ROUND_REPLIES[expected]
    assert len(ROUND_REPLIES) == 12
    assert all(reply.startswith(f"({n}) ") for n, reply in enumerate(ROUND_REPLIES, start=1))


def test_long_reply_keeps_its_paragraphs(sleeps: list[float]) -> None:
    prompt = FakePrompt()
    chunks = collect(MockChatGenerator({"type": "long"}), prompt)
    assert prompt.reply == LONG_REPLY and "\n\n" in LONG_REPLY
    assert len(chunks) == len(LONG_REPLY.split(" "))
    assert 200 <= len(LONG_REPLY.split()) <= 300


def test_echo_english_splits_on_spaces(sleeps: list[float]) -> None:
    prompt = FakePrompt("  hello   big world ")
    chunks = collect(MockChatGenerator({"type": "echo"}), prompt, {"output_type": "updated_text"})
    assert chunks == ["hello", " big", " world"]
    assert prompt.history == ["hello", "hello big", "hello big world"]


def test_echo_japanese_splits_into_characters(sleeps: list[float]) -> None:
    text = "こんにちは、世界"
    prompt = FakePrompt(text)
    chunks = collect(MockChatGenerator({"type": "echo"}), prompt, {"output_type": "updated_text"})
    assert chunks == list(text)
    assert prompt.history[0] == "こ" and prompt.reply == text


def test_japanese_detection() -> None:
    assert is_japanese("日本語です")
    assert not is_japanese("日本")  # fewer than 3 full-width characters
    assert not is_japanese("a b c d 日本語")  # as many spaces as full-width characters
    assert tokenize("ＡＢＣ")[0] == ["Ａ", "Ｂ", "Ｃ"]
    assert tokenize("plain text")[0] == ["plain", "text"]


def test_empty_echo_still_ends(sleeps: list[float]) -> None:
    prompt = FakePrompt(None)
    chunks = collect(MockChatGenerator({"type": "echo"}), prompt, {"output_type": None})
    assert chunks == [(DEFAULT_FINISH_TOKEN, "", "end")]
    assert prompt.reply == ""


def test_response_text_is_cumulative_with_finish_token(sleeps: list[float]) -> None:
    chunks = collect(MockChatGenerator({"type": "echo"}), FakePrompt("one two three"))
    assert chunks == [text + DEFAULT_FINISH_TOKEN for text in ("one", "one two", "one two three")]


def test_tuple_output_marks_begin_mid_end(sleeps: list[float]) -> None:
    chunks = collect(MockChatGenerator({"type": "echo"}), FakePrompt("one two three"), {"output_type": None})
    assert chunks == [
        ("one" + DEFAULT_FINISH_TOKEN, "one", "begin"),
        ("one two" + DEFAULT_FINISH_TOKEN, " two", "mid"),
        ("one two three" + DEFAULT_FINISH_TOKEN, " three", "end"),
    ]


def test_invalid_output_type(sleeps: list[float]) -> None:
    with pytest.raises(ValueError, match="output_type"):
        collect(MockChatGenerator(), FakePrompt(), {"output_type": "tokens"})


def test_message_id_callback_and_ignored_generation_params(sleeps: list[float]) -> None:
    events: list[str] = []
    prompt = FakePrompt("a b")

    async def on_finish(status: str) -> None:
        events.append(f"{status}:{prompt.reply}")

    opts = {"message_id": "m-1", "post_process_callback": on_finish, "generation_params": {"temperature": 0.1}}
    collect(MockChatGenerator({"type": "echo"}), prompt, opts)
    assert prompt.msg_id == "m-1"
    assert events == ["success:a b"]


def test_waits_use_the_configured_values(sleeps: list[float]) -> None:
    params = {"type": "echo", "initial_wait_sec": 1.5, "time_per_token_sec": 0.25}
    collect(MockChatGenerator(params), FakePrompt("x y z"))
    assert sleeps == [1.5, 0.25, 0.25, 0.25]
    sleeps.clear()
    collect(MockChatGenerator({"type": "echo"}), FakePrompt("x y"))
    assert sleeps == [0.0, 0.1, 0.1]  # the defaults


def test_partial_reply_kept_when_consumer_stops_early(sleeps: list[float]) -> None:
    prompt = FakePrompt("one two three four")
    finished: list[str] = []

    async def on_finish(status: str) -> None:
        finished.append(status)

    async def run() -> list[Any]:
        stream = MockChatGenerator({"type": "echo"}).generate(prompt, {"post_process_callback": on_finish})
        taken = [await anext(stream), await anext(stream)]
        await stream.aclose()
        return taken

    assert asyncio.run(run()) == [f"one{DEFAULT_FINISH_TOKEN}", f"one two{DEFAULT_FINISH_TOKEN}"]
    assert prompt.reply == "one two"
    assert finished == []


def test_cancellation_propagates() -> None:
    # real (short) sleeps: the task is cancelled while it waits between tokens
    prompt = FakePrompt("one two three four")
    gen = MockChatGenerator({"type": "echo", "time_per_token_sec": 0.05})
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in gen.generate(prompt):
            first.set()

    async def run() -> None:
        task = asyncio.create_task(consume())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert prompt.history and prompt.reply != "one two three four"


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"type": "story"}, "type"),
        ({"type": "ROUND"}, "type"),
        ({"initial_wait_sec": -1}, "initial_wait_sec"),
        ({"initial_wait_sec": "1"}, "initial_wait_sec"),
        ({"time_per_token_sec": -0.1}, "time_per_token_sec"),
        ({"time_per_token_sec": float("nan")}, "time_per_token_sec"),
        ({"time_per_token_sec": True}, "time_per_token_sec"),
        ({"mock_type": "round"}, "mock_type"),
    ],
)
def test_invalid_params_raise(params: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        MockChatGenerator(params)


def test_type_error_message_names_allowed_values() -> None:
    with pytest.raises(ValueError, match="'round', 'long', 'echo'"):
        MockChatGenerator({"type": "story"})


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, chatstream.mock, chatstream.facade.generator_mock; "
        "print(any(m in sys.modules for m in ('torch', 'transformers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
