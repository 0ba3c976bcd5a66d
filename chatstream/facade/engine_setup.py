"""Starting the engine behind a `ChatStream`: the engine builder, the Transformer Mock plug-in,
and the engine thread.

The build itself is `chatstream.engine.builder.build_engine_core`, the same as for `LLM`: a model
object passed in is used where it is, a name or path is loaded, a recording is replayed with no
weights. What the facade adds: it recognises recordings and turns recording on (the mock
plug-in, which the engine does not import), lets the engine batch at least as many sequences as
the facade lets run at once, and starts the engine's thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatstream.engine.async_engine import AsyncEngine
from chatstream.engine.builder import DeviceArg, ModelArg, TokenizerArg, build_engine_core
from chatstream.mock.recorder import RecordTo, attach_recorder
from chatstream.mock.transformer_mock import MockTransformer, as_replay_model

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class StartedEngine:
    """A running engine and what the facade keeps from its start."""

    engine: AsyncEngine
    tokenizer: PreTrainedTokenizerBase | None
    device: torch.device  # where the model's inputs go (CPU for a replay)
    recording_dir: Path | None  # where every request is recorded; None when recording is off


def start_engine(
    model: ModelArg | MockTransformer, tokenizer: TokenizerArg, device: DeviceArg, seed: int | None, max_running: int,
    engine_options: Mapping[str, Any], record_to: RecordTo = None,
) -> StartedEngine:
    """Build the engine for `model` and start its thread.

    `model`: a transformers model, a name or path, or a recording (`MockTransformer`, its
    `ReplayModel`, or a recording directory). `record_to` (None/False: off; True: a new directory
    under the cache dir; or a directory) records every request.
    """
    if model is None:
        raise ValueError("ChatStream needs a model (or use_mock_response=True)")
    replay = as_replay_model(model)
    core = build_engine_core(replay if replay is not None else model, tokenizer, engine_options,
                             owner="ChatStream", device=device, min_num_seqs=max_running, seed=seed)
    recording_dir = attach_recorder(core, record_to)
    return StartedEngine(AsyncEngine(core), core.tokenizer, core.device, recording_dir)


def recording_requested(probe_mode_enabled: bool, record_to: RecordTo) -> RecordTo:
    """Probe mode (the original's name for recording) records to the default place unless told."""
    if probe_mode_enabled and not record_to:
        return True
    return record_to

