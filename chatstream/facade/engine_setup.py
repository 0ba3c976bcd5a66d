"""Building the engine behind a `ChatStream`: the model as given, our engine around it.

A model object passed in is used where it is: on its device, or spread by `device_map`, or
quantized; nothing moves it (the `device` argument only names where the caller put it). A model
name or path is loaded with `load_model`; a recording (Transformer Mock) is replayed with no
weights. The engine may batch at least as many sequences as the facade lets run at once.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from chatstream.engine.config import EngineConfig
from chatstream.engine.async_engine import AsyncEngine
from chatstream.engine.engine_core import EngineCore
from chatstream.mock.recorder import attach_recorder
from chatstream.mock.transformer_mock import as_replay_model
from chatstream.engine.model_loader import load_model


def start_engine(
    model: Any, tokenizer: Any, device: Any, seed: int | None, max_running: int,
    engine_options: dict[str, Any], logger: logging.Logger,
    record_to: str | os.PathLike[str] | bool | None = None,
) -> tuple[AsyncEngine, Any, torch.device]:
    """Returns (the running engine, the tokenizer, the device the model's inputs go to).

    A recording (`MockTransformer`, its `ReplayModel`, or a recording directory) is replayed by a
    `ReplayEngineCore`, with no weights. `record_to` (None/False: off; True: a new directory under
    the cache dir; or a directory) records every request; the directory is `core.recording_dir`.
    """
    options = dict(engine_options)
    options.setdefault("max_num_seqs", max(max_running, EngineConfig.max_num_seqs))
    config, rest = EngineConfig.split_options(options)
    load_options = {k: rest.pop(k) for k in ("dtype",) if k in rest}
    if rest:
        raise TypeError(f"unknown ChatStream option(s): {', '.join(sorted(rest))}")
    if model is None:
        raise ValueError("ChatStream needs a model (or use_mock_response=True)")
    replay = as_replay_model(model)
    core: EngineCore
    if replay is not None:
        from chatstream.mock.replay import ReplayEngineCore

        core = ReplayEngineCore.from_model(replay, tokenizer, config)
        model_device = replay.device
    else:
        if isinstance(model, torch.nn.Module):
            hf_model, hf_tokenizer = load_model(model, tokenizer, **load_options)
            if device is not None and torch.device(device) != hf_model.device:
                logger.info("the model is on %s; it stays there (device=%r is not applied to a given model)",
                            hf_model.device, device)
        else:
            hf_model, hf_tokenizer = load_model(model, tokenizer, device=device, **load_options)
        core = EngineCore(hf_model, hf_tokenizer, config)
        model_device = hf_model.device
    attach_recorder(core, record_to)
    if seed:
        core.sampler.generator.manual_seed(int(seed))
    return AsyncEngine(core), core.tokenizer, model_device
