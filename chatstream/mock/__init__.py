"""Stand-ins for a real model, for fast development start-up and for tests.

Owns: the public names of `chatstream.mock`. They are imported lazily, so importing this package stays cheap (no
torch or transformers) until a name that needs them is used.

The modules here are the Transformer Mock, an engine plug-in: recording (a `StepRecorder`) and replay (a
`StepRunner`); they import the engine and nothing above it. `MockChatGenerator`, the generator mock, belongs to the
facade (`chatstream.facade.generator_mock`) and is only named here, so `from chatstream.mock import
MockChatGenerator` keeps working.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MockChatGenerator": "chatstream.facade.generator_mock",
    "MockTokenSampler": "chatstream.mock.transformer_mock",
    "MockTransformer": "chatstream.mock.transformer_mock",
    "Recorder": "chatstream.mock.recorder",
    "Recording": "chatstream.mock.recording",
    "RecordingError": "chatstream.mock.recording",
    "RecordingWriter": "chatstream.mock.recording",
    "ReplayDivergence": "chatstream.mock.replay_matcher",
    "ReplayEngineCore": "chatstream.mock.replay",
    "ReplayModel": "chatstream.mock.transformer_mock",
    "attach_recorder": "chatstream.mock.recorder",
    "default_recording_dir": "chatstream.mock.recording",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'chatstream.mock' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
