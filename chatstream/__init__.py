"""ChatStream: multi-user streaming chat over HuggingFace causal LMs.

Public names are imported lazily, so `import chatstream` stays cheap (no torch) until a name that
needs the engine is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "LLM": "chatstream.facade.llm",
    "SamplingParams": "chatstream.engine.sampling_params",
    "EngineConfig": "chatstream.engine.config",
    "RequestOutput": "chatstream.engine.outputs",
    "CompletionOutput": "chatstream.engine.outputs",
    "RequestDelta": "chatstream.engine.outputs",
    "EngineCore": "chatstream.engine.engine_core",
    "AsyncEngine": "chatstream.engine.async_engine",
    "EngineDeadError": "chatstream.engine.async_engine",
    "RequestFailedError": "chatstream.engine.async_engine",
    "load_model": "chatstream.engine.model_loader",
    "ChatStream": "chatstream.facade.chat_stream",
    "TokenSamplerHft": "chatstream.facade.token_samplers",
    "TokenSamplerIsok": "chatstream.facade.token_samplers",
    "AbstractRequestHandler": "chatstream.facade.request_handler",
    "SimpleSessionRequestHandler": "chatstream.facade.request_handler",
    "AbstractChatPrompt": "chatstream.chat_prompt",
    "ChatContent": "chatstream.chat_prompt",
    "RoleType": "chatstream.chat_prompt",
    "PromptTTL": "chatstream.chat_prompt",
    "ChatPromptTogetherRedPajamaINCITEChat": "chatstream.chat_prompt",
    "ChatPromptRinnaJpGptNeoxInstSft": "chatstream.chat_prompt",
    "ChatPromptRinnaJapaneseGPTNeoxInst": "chatstream.chat_prompt",
    "ChatPromptCyberAgentOpenCalm": "chatstream.chat_prompt",
    "ChatPromptMetaLlamaLlama2Chat": "chatstream.chat_prompt",
    "ChatPromptOpenlmrOpenLlama": "chatstream.chat_prompt",
    "ChatPromptStabilityAiJpGptNeoxInstSft": "chatstream.chat_prompt",
    "ChatPromptStockmarkGptNeoxJp": "chatstream.chat_prompt",
    "ChatPromptLineCorpJpLargeLmInstSft": "chatstream.chat_prompt",
    "ChatPromptMatsuoLabJpGptNeoxInstSft": "chatstream.chat_prompt",
    "ChatPromptMosaicmlMptChat": "chatstream.chat_prompt",
    "ChatPromptDatabricksDolly": "chatstream.chat_prompt",
    "ChatPromptMetaLlamaLlama3Instruct": "chatstream.chat_prompt",
    "ChatPromptRakutenMistral": "chatstream.chat_prompt",
    "ChatPromptLightblueKarasuChatPlus": "chatstream.chat_prompt",
    "ChatPromptRinnaNekomata": "chatstream.chat_prompt",
    "ChatPromptChatTemplate": "chatstream.chat_prompt",
    "LoadTime": "chatstream.loadtime",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'chatstream' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
