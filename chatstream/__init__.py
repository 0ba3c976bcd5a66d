"""ChatStream: multi-user streaming chat over HuggingFace causal LMs.

Public names are imported lazily, so `import chatstream` stays cheap (no torch) until a name that
needs the engine is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "LLM": "chatstream.llm",
    "SamplingParams": "chatstream.sampling_params",
    "EngineConfig": "chatstream.config",
    "RequestOutput": "chatstream.outputs",
    "CompletionOutput": "chatstream.outputs",
    "RequestDelta": "chatstream.outputs",
    "EngineCore": "chatstream.engine.engine_core",
    "AsyncEngine": "chatstream.engine.async_engine",
    "EngineDeadError": "chatstream.engine.async_engine",
    "load_model": "chatstream.model_loader",
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
