"""What the console chat talks to: a `ChatSession`, and `LocalChatSession` over a `ChatStream`.

`ConsoleChat` (the `YOU: ` / `AI : ` loop) only reads lines, runs commands and streams replies; a
session owns the conversation: the turns, the system text, and what the status line after a
reply says. `LocalChatSession` is the console conversation of a `ChatStream` in this process;
`chatstream.commands.remote_chat.RemoteChatSession` is a conversation with a running server over
its OpenAI API (`chatstream chat --url`). Both behave the same to the user.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from chatstream.facade.chat_generator import GenerationRecord
    from chatstream.facade.chat_stream import ChatStream


@runtime_checkable
class ChatSession(Protocol):
    """One console conversation.

    `stream_reply(text)` yields the reply to the user's `text` piece by piece; cancelling the
    iteration stops the reply (what was shown stays in the history). `status(interrupted)` is the
    line shown after it. `clear()` starts a new conversation; `set_system(text)` sets the system
    text for this and later conversations; `current_system()` is the text the next turn uses.
    """

    def stream_reply(self, text: str) -> AsyncIterator[str]: ...
    def status(self, interrupted: bool) -> str: ...
    def clear(self) -> None: ...
    def set_system(self, text: str) -> None: ...
    def current_system(self) -> str: ...


def format_status(record: GenerationRecord | None, interrupted: bool) -> str:
    """The one-line summary after a reply; `record` is the turn's GenerationRecord, or None (mock)."""
    if record is None:
        return "[interrupted]" if interrupted else "[done; the mock reports no token counts]"
    parts = [f"finish_reason={record.finish_reason}", f"{record.num_output_tokens} new tokens",
             f"prompt {record.num_prompt_tokens} tokens ({record.num_cached_tokens} cached)"]
    if record.truncated_prompt:
        parts.append("prompt truncated to context_len")
    if interrupted and record.finish_reason != "abort":
        parts.append("interrupted")
    return "[" + " · ".join(parts) + "]"


class LocalChatSession:
    """The console conversation of `chat_stream` (`handle_console_input`); `system` replaces the
    preset's system text (None keeps it)."""

    def __init__(self, chat_stream: ChatStream, system: str | None = None) -> None:
        self.chat_stream = chat_stream
        self.system = system
        self._newest_before: GenerationRecord | None = None

    def _records(self) -> list[GenerationRecord] | None:
        return getattr(self.chat_stream.chat_generator, "records", None)

    async def stream_reply(self, text: str) -> AsyncIterator[str]:
        if self.system is not None:
            self.chat_stream.get_console_chat_prompt().set_system(self.system)
        records = self._records()
        self._newest_before = records[-1] if records else None
        async for _response_text, updated_text, _pos in self.chat_stream.handle_console_input(text):
            if updated_text:
                yield updated_text

    def status(self, interrupted: bool) -> str:
        records = self._records()
        newest = records[-1] if records else None
        return format_status(newest if newest is not self._newest_before else None, interrupted)

    def clear(self) -> None:
        self.chat_stream.clear_console_context()

    def set_system(self, text: str) -> None:
        self.system = text
        prompt = self.chat_stream.console_chat_prompt
        if prompt is not None:
            prompt.set_system(text)

    def current_system(self) -> str:
        if self.system is not None:
            return self.system
        prompt = self.chat_stream.console_chat_prompt
        if prompt is not None:
            return prompt.get_system()
        clazz = self.chat_stream.chat_prompt_clazz
        return clazz().get_system() if clazz is not None else ""
