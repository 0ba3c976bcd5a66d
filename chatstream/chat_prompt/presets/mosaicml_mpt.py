"""Preset for mosaicml/mpt-7b-chat, as the reference shipped it.

The reference renders MPT with RedPajama's `<human>` / `<bot>` lines (the real MPT-chat format is ChatML; for that,
use `ChatPromptChatTemplate` with the model's tokenizer). Only the stop strings differ: just the `<human>:` prefix.
"""

from __future__ import annotations

from chatstream.chat_prompt.presets.redpajama import ChatPromptTogetherRedPajamaINCITEChat


class ChatPromptMosaicmlMptChat(ChatPromptTogetherRedPajamaINCITEChat):
    """MPT-chat in the `<human>` / `<bot>` shape."""

    chat_stop_strs = ()

