"""Ready-made prompt classes, one module per model family, and `PRESETS`: short name -> class (for the CLI)."""

from __future__ import annotations

from chatstream.chat_prompt.presets.chat_template import ChatPromptChatTemplate
from chatstream.chat_prompt.presets.dolly import ChatPromptDatabricksDolly
from chatstream.chat_prompt.presets.karasu import ChatPromptLightblueKarasuChatPlus
from chatstream.chat_prompt.presets.line import ChatPromptLineCorpJpLargeLmInstSft
from chatstream.chat_prompt.presets.llama2 import ChatPromptMetaLlamaLlama2Chat
from chatstream.chat_prompt.presets.llama3 import ChatPromptMetaLlamaLlama3Instruct
from chatstream.chat_prompt.presets.matsuo_lab import ChatPromptMatsuoLabJpGptNeoxInstSft
from chatstream.chat_prompt.presets.mosaicml_mpt import ChatPromptMosaicmlMptChat
from chatstream.chat_prompt.presets.nekomata import ChatPromptRinnaNekomata
from chatstream.chat_prompt.presets.open_calm import ChatPromptCyberAgentOpenCalm
from chatstream.chat_prompt.presets.open_llama import ChatPromptOpenlmrOpenLlama
from chatstream.chat_prompt.presets.rakuten import ChatPromptRakutenMistral
from chatstream.chat_prompt.presets.redpajama import ChatPromptTogetherRedPajamaINCITEChat
from chatstream.chat_prompt.presets.rinna import ChatPromptRinnaJapaneseGPTNeoxInst, ChatPromptRinnaJpGptNeoxInstSft
from chatstream.chat_prompt.presets.stabilityai_jp import ChatPromptStabilityAiJpGptNeoxInstSft
from chatstream.chat_prompt.presets.stockmark import ChatPromptStockmarkGptNeoxJp

PRESETS: dict[str, type] = {
    "chat_template": ChatPromptChatTemplate,
    "dolly": ChatPromptDatabricksDolly,
    "karasu": ChatPromptLightblueKarasuChatPlus,
    "line": ChatPromptLineCorpJpLargeLmInstSft,
    "llama2": ChatPromptMetaLlamaLlama2Chat,
    "llama3": ChatPromptMetaLlamaLlama3Instruct,
    "matsuo": ChatPromptMatsuoLabJpGptNeoxInstSft,
    "mpt": ChatPromptMosaicmlMptChat,
    "nekomata": ChatPromptRinnaNekomata,
    "open_calm": ChatPromptCyberAgentOpenCalm,
    "open_llama": ChatPromptOpenlmrOpenLlama,
    "rakuten": ChatPromptRakutenMistral,
    "redpajama": ChatPromptTogetherRedPajamaINCITEChat,
    "rinna": ChatPromptRinnaJpGptNeoxInstSft,
    "stabilityai_jp": ChatPromptStabilityAiJpGptNeoxInstSft,
    "stockmark": ChatPromptStockmarkGptNeoxJp,
}

__all__ = [
    "PRESETS",
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
]
