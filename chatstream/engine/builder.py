"""The one way an engine is built: options → one frozen `EngineConfig` → the model → `EngineCore`.

`LLM`, `ChatStream` and the server all build their engine here, so a given option means the same
thing everywhere. The model can be:

- an already loaded HuggingFace model: used where it is (on its device, spread by `device_map`,
  quantized); nothing moves it, and `device` only says where the caller meant it to be;
- a local directory, a hub id, or None / "smollm2" (the bundled SmolLM2): loaded with `dtype` and
  onto `device`, into our Llama-family modules or transformers' classes as `model_impl` says
  (`model_impl.py`);
- a `RunnerSource`, an object that brings its own step runner instead of weights (the
  Transformer Mock's `ReplayModel`): the engine around it is the real one, only the logits differ.

Recognising a Transformer Mock object or a recording directory, and recording, are the plug-in's
business (`chatstream.mock`); its callers hand the result in, so the engine imports no plug-in.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Union

import torch
from transformers import AutoTokenizer

from chatstream.engine.config import LOAD_OPTIONS, EngineConfig
from chatstream.engine.engine_core import EngineCore
from chatstream.engine.kernel_prebuild import KernelPrebuild, prebuild_wanted
from chatstream.engine.model_impl import check_model_impl, load_engine_model
from chatstream.engine.model_loader import resolve_device
from chatstream.engine.openmp_threads import in_passing_thread
from chatstream.engine.step_runner import RunnerSource
from chatstream.engine.warmup import warm_up
from chatstream.startup import StartupPhase

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger("chatstream.engine")

ModelArg = Union["PreTrainedModel", torch.nn.Module, RunnerSource, str, os.PathLike[str], None]
TokenizerArg = Union["PreTrainedTokenizerBase", str, os.PathLike[str], None]
DeviceArg = str | torch.device | None



def engine_config(options: Mapping[str, Any], *, owner: str = "LLM",
                  min_num_seqs: int | None = None) -> tuple[EngineConfig, dict[str, Any]]:
    """Split `options` into the engine's config and the load options (`dtype`, `device`).

    `min_num_seqs`: the engine must batch at least this many sequences (a facade that lets N
    generations run at once); an explicit `max_num_seqs` wins. An unknown option is a TypeError
    naming `owner`, the API it was passed to.
    """
    options = dict(options)
    if min_num_seqs is not None:
        options.setdefault("max_num_seqs", max(min_num_seqs, EngineConfig.max_num_seqs))
    config, rest = EngineConfig.split_options(options)
    load = {key: rest.pop(key) for key in LOAD_OPTIONS if key in rest}
    if rest:
        raise TypeError(f"unknown {owner} option(s): {', '.join(sorted(rest))}")
    if "model_impl" in load:
        check_model_impl(load["model_impl"])
    return config, load


def build_engine_core(
    model: ModelArg,
    tokenizer: TokenizerArg = None,
    options: Mapping[str, Any] | None = None,
    *,
    owner: str = "LLM",
    device: DeviceArg = None,
    min_num_seqs: int | None = None,
    seed: int | None = None,
) -> EngineCore:
    """The engine for `model` (see the module docstring), ready for its first request.

    `options`: `EngineConfig` fields plus `dtype` and `device`; `device` may also be given as a
    keyword (the option wins). `seed` seeds the draws of requests that bring no seed of their own.
    """
    config, load = engine_config(options or {}, owner=owner, min_num_seqs=min_num_seqs)
    device = load.pop("device", device)
    if isinstance(model, RunnerSource):
        # dtype/device do not apply: the runner brings no weights to place.
        tok = _source_tokenizer(model, tokenizer)
        core = EngineCore(model, tok, config, runner=model.step_runner(tok, config))  # type: ignore[arg-type]
    else:
        # In a thread that ends, so that the OpenMP pool its parallel loading leaves goes with it
        # (openmp_threads.py): the engine thread's workers then spin instead of sleeping.
        core = in_passing_thread(lambda: _load_and_prepare(model, tokenizer, config, load, device))
    if seed:
        core.sampler.generator.manual_seed(int(seed))
    return core


def _load_and_prepare(model: ModelArg, tokenizer: TokenizerArg, config: EngineConfig, load: dict[str, Any],
                      device: DeviceArg) -> EngineCore:
    """The model loaded (or taken as given), its weights prepared, the KV cache allocated, warmed up."""
    # On the CPU the attention kernel is compiled (once per machine) while the weights load.
    target = model.device if isinstance(model, torch.nn.Module) else resolve_device(device)
    kernel = KernelPrebuild() if prebuild_wanted(target, config.cpu_attention_kernel) else None
    loaded, loaded_tokenizer = load_engine_model(model, tokenizer, config, kernel, device=device, **load)
    if isinstance(model, torch.nn.Module) and device is not None and torch.device(device) != loaded.device:
        logger.info("the model is on %s; it stays there (device=%r is not applied to a given model)",
                    loaded.device, device)
    with StartupPhase("prepare", "allocating the KV cache and preparing the model's weights for the engine"):
        core = EngineCore(loaded, loaded_tokenizer, config)
    if config.warmup:
        warm_up(core)
    return core


def _source_tokenizer(model: RunnerSource, tokenizer: TokenizerArg) -> PreTrainedTokenizerBase | None:
    """The tokenizer given (a name is loaded), else the one the runner source brings."""
    if tokenizer is None:
        return model.default_tokenizer()
    if isinstance(tokenizer, (str, os.PathLike)):
        return AutoTokenizer.from_pretrained(os.fspath(tokenizer))
    return tokenizer
