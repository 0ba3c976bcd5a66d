"""Console chat: a `YOU: ` / `AI : ` loop over a `ChatSession`.

`ConsoleChat` holds the loop and takes its input function and output stream as arguments, so tests
drive it with scripted lines and a `StringIO`. It talks to a `ChatSession` (`console_session.py`):
a `ChatStream` in this process (`LocalChatSession`, made when a `ChatStream` is passed), or a
running server (`chatstream chat --url`). `run_chat` is the local `chatstream chat` subcommand: it
builds the `ChatStream` from the parsed arguments and runs the loop.

Commands: `/help`, `/clear`, `/system [TEXT]`, `/exit` and `/quit` (Ctrl-D too). Ctrl-C during a
reply stops that reply (the engine aborts the request; the partial reply stays in the history);
Ctrl-C at the prompt only prints a hint. After each reply a dim status line shows why it ended and
what it cost in tokens (the newest record of the chat generator; the mock keeps none).

Nothing heavy is imported here at module level: the CLI imports this module to build its parser.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

from chatstream.facade.console_session import ChatSession, LocalChatSession, format_status

if TYPE_CHECKING:
    from chatstream.facade.chat_stream import ChatStream

__all__ = ["PROMPT", "REPLY_PREFIX", "ConsoleChat", "format_status", "add_chat_arguments", "run_chat"]

PROMPT = "YOU: "
REPLY_PREFIX = "AI : "

HELP_TEXT = """\
/help          this list
/clear         start a new conversation
/system TEXT   set the system text for this and later conversations; /system alone shows it
/exit, /quit   leave (Ctrl-D too)
Ctrl-C during a reply stops it; the partial reply stays in the history."""

_DIM, _RESET = "\x1b[2m", "\x1b[0m"


class ConsoleChat:
    """An interactive chat on one `ChatSession` (a `ChatStream` is taken as its console conversation).

    `input_fn(prompt)` returns a line and raises EOFError at the end of input (like `input`).
    `system`: with a `ChatStream`, the system text to use instead of the preset's own (None keeps it).
    `color`: dim the status lines with ANSI codes (default: when `output` is a terminal).
    """

    def __init__(self, chat: ChatStream | ChatSession, input_fn: Callable[[str], str] = input,
                 output: TextIO | None = None, system: str | None = None, color: bool | None = None) -> None:
        self.session: ChatSession = chat if isinstance(chat, ChatSession) else LocalChatSession(chat, system)
        self.input_fn = input_fn
        self.output = output if output is not None else sys.stdout
        if color is None:
            isatty = getattr(self.output, "isatty", None)
            color = bool(isatty and isatty())
        self.color = color
        self._reply_task: asyncio.Task | None = None
        self._interrupted = False
        self._commands: dict[str, Callable[[str], bool]] = {
            "/help": self._cmd_help, "/clear": self._cmd_clear, "/system": self._cmd_system,
            "/exit": self._cmd_exit, "/quit": self._cmd_exit,
        }

    # -- the loop ----------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Read lines until /exit, /quit or the end of input."""
        with _keyboard_interrupt_at_prompt():
            while True:
                try:
                    line = self.input_fn(PROMPT)
                except EOFError:
                    self._write("\n")
                    return
                except KeyboardInterrupt:
                    self._write("\n")
                    self._status("(Ctrl-D or /exit leaves)")
                    continue
                if not await self.handle_line(line):
                    return

    async def handle_line(self, line: str) -> bool:
        """Run one command or chat turn; False when the chat should end."""
        text = line.strip()
        if not text:
            return True
        if text.startswith("/"):
            name, _, rest = text.partition(" ")
            command = self._commands.get(name.lower())
            if command is None:
                self._write(f"unknown command {name}; /help lists the commands\n")
                return True
            return command(rest.strip())
        await self.reply(text)
        return True

    @property
    def chat_stream(self) -> ChatStream | None:
        """The local ChatStream, when the session is one."""
        return getattr(self.session, "chat_stream", None)

    async def reply(self, text: str) -> None:
        """Stream the reply to `text`, then the status line. Ctrl-C (or `cancel_reply`) stops it early."""
        self._interrupted = False
        self._write(REPLY_PREFIX)
        task = asyncio.ensure_future(self._stream(text))
        self._reply_task = task
        try:
            with _ctrl_c_calls(self.cancel_reply):
                await task
        except asyncio.CancelledError:
            if not self._interrupted:  # we were cancelled ourselves, not the reply alone
                raise
        except Exception as exc:  # noqa: BLE001 - a failed turn should not end the chat
            self._write(f"\nerror: {exc}\n")
            return
        finally:
            self._reply_task = None
        self._write("\n")
        self._status(self.session.status(self._interrupted))

    def cancel_reply(self) -> None:
        """Stop the reply being streamed, if any (what Ctrl-C does)."""
        task = self._reply_task
        if task is not None and not task.done():
            self._interrupted = True
            task.cancel()

    async def _stream(self, text: str) -> None:
        async for piece in self.session.stream_reply(text):
            self._write(piece)

    # -- commands: each returns False to end the chat --------------------------------------------------------
    def _cmd_help(self, _arg: str) -> bool:
        self._write(HELP_TEXT + "\n")
        return True

    def _cmd_clear(self, _arg: str) -> bool:
        self.session.clear()
        self._status("(new conversation)")
        return True

    def _cmd_system(self, arg: str) -> bool:
        if not arg:
            current = self.current_system()
            self._write(f"system: {current}\n" if current else "system: (none; the prompt format's default, if any)\n")
            return True
        self.session.set_system(arg)
        self._status("(system text set)")
        return True

    def _cmd_exit(self, _arg: str) -> bool:
        return False

    # -- helpers ---------------------------------------------------------------------------------------------
    def current_system(self) -> str:
        """The system text the next turn is rendered with."""
        return self.session.current_system()

    def _write(self, text: str) -> None:
        self.output.write(text)
        self.output.flush()

    def _status(self, text: str) -> None:
        self._write(f"{_DIM}{text}{_RESET}\n" if self.color else f"{text}\n")


@contextlib.contextmanager
def _keyboard_interrupt_at_prompt() -> Iterator[None]:
    """Make Ctrl-C raise KeyboardInterrupt (in `input`) for the loop's duration.

    `asyncio.run` turns the first Ctrl-C into a cancellation of its main task, which a blocking
    `input()` would only see after the next line; the loop wants the plain Python behaviour.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _ctrl_c_calls(callback: Callable[[], None]) -> Iterator[None]:
    """While inside, Ctrl-C calls `callback` on the event loop instead of raising KeyboardInterrupt.

    Where the loop cannot take signals (not the main thread, or Windows), Ctrl-C behaves as usual.
    """
    loop = asyncio.get_running_loop()
    try:
        previous = signal.getsignal(signal.SIGINT)
        loop.add_signal_handler(signal.SIGINT, callback)
    except (NotImplementedError, RuntimeError, ValueError):
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, previous)


# -- the `chatstream chat` subcommand ---------------------------------------------------------------------------
def add_chat_arguments(parser: argparse.ArgumentParser) -> None:
    """The chat's own options (the engine's options are added by the CLI)."""
    from chatstream.chat_prompt.presets import PRESETS

    parser.add_argument("--chat-prompt", default="chat_template", choices=sorted(PRESETS), metavar="PRESET",
                        help="prompt preset: %(choices)s (default: %(default)s, the model's own chat template)")
    parser.add_argument("--system", default=None, help="system text (default: the preset's own)")
    parser.add_argument("--temperature", type=float, default=0.7, help="0 means greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0, help="0 disables top-k")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--context-len", type=int, default=2048,
                        help="most tokens of prompt plus reply; older turns are cut beyond it")


def run_chat(args: argparse.Namespace, engine_options: dict[str, Any]) -> int:
    """Build the ChatStream from the parsed arguments and chat until the user leaves."""
    from chatstream.chat_prompt.presets import PRESETS
    from chatstream.facade.chat_stream import ChatStream

    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 - line editing and history for input()

    options = dict(engine_options)
    chat_stream = ChatStream(
        model=args.model, chat_prompt_clazz=PRESETS[args.chat_prompt], device=options.pop("device", None),
        num_of_concurrent_executions=1, temperature=args.temperature, top_p=args.top_p,
        top_k=args.top_k or None, max_new_tokens=args.max_new_tokens, context_len=args.context_len, **options)
    try:
        asyncio.run(ConsoleChat(chat_stream, system=args.system).run())
    except KeyboardInterrupt:
        return 130
    finally:
        chat_stream.shutdown()
    return 0
