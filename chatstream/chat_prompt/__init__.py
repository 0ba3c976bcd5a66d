"""Chat prompts: how a chat history becomes a model's prompt text.

Exports the base class `AbstractChatPrompt`, the history types (`ChatContent`, `RoleType`, `PromptTTL`) and every
preset. Importing this package loads neither torch nor transformers.
"""

from __future__ import annotations

from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.chat_content import ChatContent
from chatstream.chat_prompt.presets import (
    PRESETS,
    ChatPromptChatTemplate,
    ChatPromptCyberAgentOpenCalm,
    ChatPromptDatabricksDolly,
    ChatPromptLightblueKarasuChatPlus,
    ChatPromptLineCorpJpLargeLmInstSft,
    ChatPromptMatsuoLabJpGptNeoxInstSft,
    ChatPromptMetaLlamaLlama2Chat,
    ChatPromptMetaLlamaLlama3Instruct,
    ChatPromptMosaicmlMptChat,
    ChatPromptOpenlmrOpenLlama,
    ChatPromptRakutenMistral,
    ChatPromptRinnaJapaneseGPTNeoxInst,
    ChatPromptRinnaJpGptNeoxInstSft,
    ChatPromptRinnaNekomata,
    ChatPromptStabilityAiJpGptNeoxInstSft,
    ChatPromptStockmarkGptNeoxJp,
    ChatPromptTogetherRedPajamaINCITEChat,
)
from chatstream.chat_prompt.prompt_ttl import PromptTTL
from chatstream.chat_prompt.role_type import RoleType

__all__ = [
    "PRESETS",
    "AbstractChatPrompt",
    "ChatContent",
    "ChatPromptChatTemplate",
    "ChatPromptCyberAgentOpenCalm",
    "ChatPromptDatabricksDolly",
    "ChatPromptLightblueKarasuChatPlus",
    "ChatPromptLineCorpJpLargeLmInstSft",
    "ChatPromptMatsuoLabJpGptNeoxInstSft",
    "ChatPromptMetaLlamaLlama2Chat",
    "ChatPromptMetaLlamaLlama3Instruct",
    "ChatPromptMosaicmlMptChat",
    "ChatPromptOpenlmrOpenLlama",
    "ChatPromptRakutenMistral",
    "ChatPromptRinnaJapaneseGPTNeoxInst",
    "ChatPromptRinnaJpGptNeoxInstSft",
    "ChatPromptRinnaNekomata",
    "ChatPromptStabilityAiJpGptNeoxInstSft",
    "ChatPromptStockmarkGptNeoxJp",
    "ChatPromptTogetherRedPajamaINCITEChat",
    "PromptTTL",
    "RoleType",
]
