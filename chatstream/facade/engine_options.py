"""The engine keywords `ChatStream` takes besides its own arguments, checked the same way with a
model, with the generator mock, or with neither.

Torch-free, so a mock ChatStream checks its keywords without loading the engine's stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from chatstream.engine.config import LOAD_OPTIONS, EngineConfig


def check_engine_options(options: Mapping[str, Any]) -> None:
    """A TypeError for a keyword ChatStream does not know, whether or not a model is given (the
    original's constructor took no others either); values are checked as the engine would."""
    _, rest = EngineConfig.split_options(dict(options))
    unknown = sorted(set(rest) - set(LOAD_OPTIONS))
    if not unknown:
        return
    hint = ""
    if "mock_type" in unknown:
        hint = ' (the mock\'s reply type is mock_params={"type": "round" | "long" | "echo"})'
    known = sorted([f.name for f in fields(EngineConfig)] + list(LOAD_OPTIONS))
    raise TypeError(f"ChatStream() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}{hint}; "
                    f"besides its own arguments it takes the engine options {', '.join(known)}")
