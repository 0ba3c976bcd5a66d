"""ReplyLog: what the server knows about each reply by message id, and the generator mock's entries in it."""

from __future__ import annotations

import asyncio

from chatstream.chat_prompt import ChatPromptTogetherRedPajamaINCITEChat
from chatstream.facade.generator_mock import MockChatGenerator
from chatstream.facade.reply_log import GenerationRecord, ReplyLog, ReplyTimer


def _record(message_id: str | None, num_output_tokens: int = 5, decode_sec: float | None = 2.0) -> GenerationRecord:
    return GenerationRecord(message_id, 10, 4, num_output_tokens, "stop", False, "text", 0.25, decode_sec)


def test_a_reply_is_running_until_it_ends_then_found_by_id() -> None:
    log = ReplyLog()
    log.begin("a")
    assert log.is_running("a") and log.find("a") is None
    log.end(_record("a"))
    assert not log.is_running("a") and log.find("a").text == "text"
    log.begin(None)  # replies without an id (the console) are not kept
    log.end(_record(None))
    assert log.find("None") is None


def test_only_the_newest_replies_are_kept() -> None:
    log = ReplyLog(max_replies=3)
    for name in "abcd":
        log.end(_record(name))
    assert log.find("a") is None and [log.find(n).message_id for n in "bcd"] == ["b", "c", "d"]


def test_decode_speed_counts_the_tokens_after_the_first() -> None:
    assert _record("a", num_output_tokens=5, decode_sec=2.0).tokens_per_sec == 2.0
    assert _record("a", num_output_tokens=1, decode_sec=0.0).tokens_per_sec is None
    assert _record("a", decode_sec=None).tokens_per_sec is None
    stats = _record("a", num_output_tokens=4, decode_sec=3.0).stats()
    assert stats == {"num_prompt_tokens": 10, "num_cached_tokens": 4, "num_output_tokens": 4, "finish_reason": "stop",
                     "time_to_first_token_sec": 0.25, "decode_sec": 3.0, "tokens_per_sec": 1.0}


def test_the_timer_starts_at_creation_and_marks_first_and_last_token() -> None:
    timer = ReplyTimer()
    assert timer.time_to_first_token_sec is None and timer.decode_sec is None
    timer.token()
    first = timer.time_to_first_token_sec
    assert first is not None and first >= 0 and timer.decode_sec == 0
    timer.token()
    assert timer.time_to_first_token_sec == first and timer.decode_sec >= 0


def _prompt(text: str) -> ChatPromptTogetherRedPajamaINCITEChat:
    prompt = ChatPromptTogetherRedPajamaINCITEChat()
    prompt.build_initial_prompt(prompt)
    prompt.add_requester_msg(text)
    prompt.add_responder_msg(None)
    return prompt


def test_the_mock_logs_a_finished_and_a_stopped_reply() -> None:
    mock = MockChatGenerator({"type": "echo", "time_per_token_sec": 0})

    async def run() -> None:
        async for _ in mock.generate(_prompt("one two three"), {"message_id": "full"}):
            assert mock.replies.is_running("full")
        stream = mock.generate(_prompt("four five six"), {"message_id": "cut"})
        await stream.__anext__()
        await stream.__anext__()
        await stream.aclose()

    asyncio.run(run())
    full, cut = mock.replies.find("full"), mock.replies.find("cut")
    assert (full.text, full.num_output_tokens, full.finish_reason) == ("one two three", 3, "stop")
    assert (cut.text, cut.num_output_tokens, cut.finish_reason) == ("four five", 2, "abort")
    assert full.time_to_first_token_sec is not None and not mock.replies.is_running("cut")
