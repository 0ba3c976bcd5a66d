"""Chat prompts: how a chat history becomes a model's prompt text.

Exports the base class `AbstractChatPrompt`, the history types (`ChatContent`, `RoleType`, `PromptTTL`) and every
preset (see `chatstream.chat_prompt.presets`). Importing this package loads neither torch nor transformers.
"""

from __future__ import annotations

from chatstream.chat_prompt import presets
from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.chat_content import ChatContent
from chatstream.chat_prompt.presets import *  # noqa: F403 - every preset class and PRESETS
from chatstream.chat_prompt.prompt_ttl import PromptTTL
from chatstream.chat_prompt.role_type import RoleType

__all__ = ["AbstractChatPrompt", "ChatContent", "PromptTTL", "RoleType", *presets.__all__]
