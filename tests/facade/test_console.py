"""The console chat: `ConsoleChat` driven with scripted input on the mock, and the real `chatstream chat` once."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from chatstream.facade.chat_generator import GenerationRecord
from chatstream.chat_prompt.presets import ChatPromptDatabricksDolly
from chatstream.facade.chat_stream import ChatStream
from chatstream.facade.console import PROMPT, REPLY_PREFIX, ConsoleChat, format_status

REPO_ROOT = Path(__file__).resolve().parent.parent


def make_chat_stream(**mock_params) -> ChatStream:
    return ChatStream(use_mock_response=True, mock_params={"type": "echo", "time_per_token_sec": 0, **mock_params},
                      chat_prompt_clazz=ChatPromptDatabricksDolly)


def scripted(lines: Iterable[str], prompts: list[str] | None = None) -> Callable[[str], str]:
    """An `input` stand-in: returns the lines in turn, then raises EOFError (Ctrl-D)."""
    pending = list(lines)

    def input_fn(prompt: str) -> str:
        if prompts is not None:
            prompts.append(prompt)
        if not pending:
            raise EOFError
        line = pending.pop(0)
        if isinstance(line, BaseException):
            raise line
        return line

    return input_fn


def run_console(lines: Iterable, chat_stream: ChatStream | None = None, **kwargs) -> tuple[ConsoleChat, str]:
    chat_stream = chat_stream or make_chat_stream()
    output = io.StringIO()
    console = ConsoleChat(chat_stream, input_fn=scripted(lines, kwargs.pop("prompts", None)), output=output,
                          **kwargs)
    asyncio.run(console.run())
    return console, output.getvalue()


def test_a_turn_streams_the_reply_after_the_ai_prefix() -> None:
    prompts: list[str] = []
    console, out = run_console(["hello there world"], prompts=prompts)
    assert f"{REPLY_PREFIX}hello there world\n" in out
    assert prompts == [PROMPT, PROMPT]  # the turn, then the EOF
    assert "\x1b[" not in out  # a StringIO is no terminal: plain text
    prompt = console.chat_stream.console_chat_prompt
    assert prompt.get_requester_last_msg() == "hello there world"
    assert prompt.get_responder_last_msg() == "hello there world"


def test_status_line_follows_each_reply() -> None:
    _, out = run_console(["one", "two"])
    assert out.count("[done; the mock reports no token counts]\n") == 2


def test_status_line_shows_the_newest_generation_record() -> None:
    record = GenerationRecord("m", num_prompt_tokens=40, num_cached_tokens=32, num_output_tokens=16,
                              finish_reason="length", truncated_prompt=False)
    assert format_status(record, interrupted=False) == (
        "[finish_reason=length · 16 new tokens · prompt 40 tokens (32 cached)]")
    aborted = GenerationRecord("m", 40, 0, 3, "abort", True)
    assert format_status(aborted, interrupted=True) == (
        "[finish_reason=abort · 3 new tokens · prompt 40 tokens (0 cached) · prompt truncated to context_len]")
    chat_stream = make_chat_stream()
    chat_stream.chat_generator.records = [record]  # a record from before the turn is not this turn's

    _, out = run_console(["hi"], chat_stream=chat_stream)
    assert "finish_reason=length" not in out


def test_status_line_is_dim_on_a_terminal() -> None:
    _, out = run_console(["hi"], color=True)
    assert "\x1b[2m[done; the mock reports no token counts]\x1b[0m\n" in out


def test_clear_starts_a_new_conversation() -> None:
    console, out = run_console(["first question", "/clear"])
    assert console.chat_stream.console_chat_prompt is None
    assert "(new conversation)" in out


def test_history_grows_until_clear() -> None:
    console, _ = run_console(["first", "second"])
    prompt = console.chat_stream.console_chat_prompt
    assert [c.get_message() for c in prompt.requester_messages] == ["first", "second"]

    console, _ = run_console(["first", "/clear", "second"])
    assert [c.get_message() for c in console.chat_stream.console_chat_prompt.requester_messages] == ["second"]


def test_system_changes_the_current_conversations_prompt() -> None:
    console, out = run_console(["hello", "/system You answer in haiku.", "again"])
    rendered = console.chat_stream.console_chat_prompt.create_prompt()
    assert rendered.startswith("You answer in haiku.\n\n### Instruction:\nhello")
    assert "Below is an instruction" not in rendered
    assert "(system text set)" in out


def test_system_applies_to_the_first_turn_and_after_clear() -> None:
    console, _ = run_console(["/system Be brief.", "hello"])
    assert console.chat_stream.console_chat_prompt.create_prompt().startswith("Be brief.\n\n### Instruction:\nhello")

    console, _ = run_console(["hello", "/system Be brief.", "/clear", "again"])
    rendered = console.chat_stream.console_chat_prompt.create_prompt()
    assert rendered.startswith("Be brief.\n\n### Instruction:\nagain")
    assert "hello" not in rendered


def test_system_given_to_the_constructor_is_used() -> None:
    console, _ = run_console(["hello"], system="From the start.")
    assert console.chat_stream.console_chat_prompt.create_prompt().startswith("From the start.\n\n")


def test_system_alone_shows_the_system_text() -> None:
    _, out = run_console(["/system"])
    assert "system: Below is an instruction that describes a task." in out  # the preset's own, before any turn

    _, out = run_console(["/system Talk like a pirate.", "/system"])
    assert "system: Talk like a pirate.\n" in out


@pytest.mark.parametrize("command", ["/exit", "/quit", "/EXIT"])
def test_exit_commands_end_the_chat(command: str) -> None:
    prompts: list[str] = []
    _, out = run_console(["hi", command, "never read"], prompts=prompts)
    assert len(prompts) == 2
    assert "never read" not in out


def test_end_of_input_ends_the_chat() -> None:
    prompts: list[str] = []
    _, out = run_console([], prompts=prompts)
    assert prompts == [PROMPT]
    assert out == "\n"  # the line break that the terminal did not get from Ctrl-D


def test_unknown_command_gives_a_hint_and_sends_nothing() -> None:
    console, out = run_console(["/frobnicate now"])
    assert "unknown command /frobnicate; /help lists the commands" in out
    assert REPLY_PREFIX not in out
    assert console.chat_stream.console_chat_prompt is None


def test_help_lists_the_commands() -> None:
    _, out = run_console(["/help"])
    for command in ("/help", "/clear", "/system", "/exit", "/quit", "Ctrl-C"):
        assert command in out


def test_blank_lines_are_ignored() -> None:
    console, out = run_console(["", "   "])
    assert REPLY_PREFIX not in out
    assert console.chat_stream.console_chat_prompt is None


def test_ctrl_c_at_the_prompt_keeps_the_chat_going() -> None:
    prompts: list[str] = []
    _, out = run_console([KeyboardInterrupt(), "still here"], prompts=prompts)
    assert "(Ctrl-D or /exit leaves)" in out
    assert f"{REPLY_PREFIX}still here\n" in out


class _InterruptAfter(io.StringIO):
    """Output that calls `interrupt` once the reply has shown `word`."""

    def __init__(self, word: str, interrupt: Callable[[], None]) -> None:
        super().__init__()
        self.word, self.interrupt, self.fired = word, interrupt, False

    def write(self, text: str) -> int:
        count = super().write(text)
        if not self.fired and self.getvalue().endswith(self.word):
            self.fired = True
            self.interrupt()
        return count


LONG_INPUT = "one two " + " ".join(f"w{i}" for i in range(50))


def _interrupted_turn(interrupt: Callable[[ConsoleChat], None]) -> tuple[ConsoleChat, str]:
    chat_stream = make_chat_stream()
    holder: list[ConsoleChat] = []
    output = _InterruptAfter("two", lambda: interrupt(holder[0]))
    console = ConsoleChat(chat_stream, input_fn=scripted([LONG_INPUT, "next"]), output=output)
    holder.append(console)
    asyncio.run(console.run())
    return console, output.getvalue()


def _assert_reply_stopped(console: ConsoleChat, out: str) -> str:
    """The shown part of the stopped reply: a cut-short reply, kept in the history as shown."""
    assert out.startswith(REPLY_PREFIX) and "\n[interrupted]\n" in out
    shown = out[len(REPLY_PREFIX):out.index("\n[interrupted]\n")]
    assert shown.startswith("one two") and shown != LONG_INPUT
    assert f"{REPLY_PREFIX}next\n" in out  # back at the prompt, the chat goes on
    prompt = console.chat_stream.console_chat_prompt
    assert [c.get_message() for c in prompt.responder_messages] == [shown, "next"]  # the partial reply stays in the history
    return shown


def test_cancel_reply_stops_the_reply_and_keeps_the_partial_text() -> None:
    console, out = _interrupted_turn(lambda console: console.cancel_reply())
    assert _assert_reply_stopped(console, out) == "one two"  # the mock's next token waits on the loop


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32", reason="needs POSIX signals")
def test_ctrl_c_during_a_reply_stops_only_that_reply() -> None:
    handler_before = signal.getsignal(signal.SIGINT)
    # The signal reaches the loop a step or two later, so a token or two more may show.
    console, out = _interrupted_turn(lambda console: os.kill(os.getpid(), signal.SIGINT))
    _assert_reply_stopped(console, out)
    assert signal.getsignal(signal.SIGINT) is handler_before


def test_a_failing_turn_reports_the_error_and_the_chat_goes_on() -> None:
    chat_stream = make_chat_stream()

    async def broken(reply):
        raise RuntimeError("engine is gone")
        yield  # pragma: no cover

    chat_stream.chat_generator.stream = broken
    _, out = run_console(["hi", "/help"], chat_stream=chat_stream)
    assert "error: engine is gone" in out
    assert "/clear" in out


@pytest.mark.slow
def test_chat_cli_answers_with_the_real_model(smollm2_dir: Path, tmp_path: Path) -> None:
    """`chatstream chat` end to end on the bundled SmolLM2 (converted by the fixture before the process starts).

    The process gets the converted directory itself and a cache folder of its own for its load-time records.
    """
    env = {**os.environ, "CHATSTREAM_CACHE_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-m", "chatstream.cli", "chat", "--model", str(smollm2_dir), "--max-new-tokens", "16",
         "--temperature", "0", "--num-kv-blocks", "64"],
        input="What is the capital of France?\n/exit\n", capture_output=True, text=True, timeout=180,
        cwd=REPO_ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert REPLY_PREFIX.strip() in result.stdout
    assert "Paris" in result.stdout
    assert "finish_reason=" in result.stdout
