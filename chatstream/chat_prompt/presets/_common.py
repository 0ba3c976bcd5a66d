"""Small rendering helpers shared by the presets.

This module owns the two idioms every hand-written preset repeats: the chat-mode-off passthrough and folding a
user turn's child messages into its text (for formats that have no separate input section).
"""

from __future__ import annotations

from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.chat_content import ChatContent


def passthrough_prompt(prompt: AbstractChatPrompt) -> str:
    """The prompt when chat mode is off: the raw last user message (plain completion)."""
    return prompt.get_requester_last_msg() or ""


def merged_message(content: ChatContent, separator: str = "\n\n") -> str | None:
    """The turn's text followed by its child messages; None stays None (an open turn)."""
    message = content.get_message()
    if message is None or not content.has_child_messages():
        return message
    return separator.join([message, *content.get_child_messages()])
