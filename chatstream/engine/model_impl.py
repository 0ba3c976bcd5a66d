"""Which implementation holds the engine's model: our own modules or transformers' model classes.

`model_impl` (the choice vLLM's `--model-impl` offers):
- "auto" (default): a Llama-family checkpoint in a local directory, run on the CPU in fp32 or bf16
  by an engine with the fused CPU layers, loads into our modules (`native_model.py`); anything
  else loads with transformers. Where "auto" falls back, the log says why.
- "native": our modules or an error that says why they cannot hold this model.
- "transformers": always transformers' `AutoModelForCausalLM`.

Both give the same weights to the same fused layers, so the tokens are the same; ours does not
import transformers' modeling code, which saves about 90 MiB of resident memory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoTokenizer, GenerationConfig

from chatstream.engine.config import EngineConfig
from chatstream.engine.cpu_attention import load_cpu_ops
from chatstream.engine.kernel_prebuild import KernelPrebuild
from chatstream.engine.model_loader import (
    config_dtype,
    load_model,
    load_tokenizer,
    model_source,
    resolve_device,
    resolve_dtype,
)
from chatstream.engine.native_loader import NativeLoadError, load_native_model, native_problem, read_config
from chatstream.startup import StartupPhase

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

MODEL_IMPLS = ("auto", "native", "transformers")

logger = logging.getLogger("chatstream.engine")


def check_model_impl(model_impl: object) -> str:
    if model_impl not in MODEL_IMPLS:
        raise ValueError(f"model_impl must be one of {', '.join(MODEL_IMPLS)}, got {model_impl!r}")
    return str(model_impl)


def load_engine_model(model: Any, tokenizer: Any, config: EngineConfig, kernel: KernelPrebuild | None, *,
                      dtype: str | torch.dtype = "auto", device: str | torch.device | None = None,
                      model_impl: str = "auto") -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """The model and tokenizer an engine with `config` runs, loaded by the implementation `model_impl` picks
    (see the module docstring). `kernel`: the CPU kernels' build started ahead, if any; this returns once it
    has ended."""
    check_model_impl(model_impl)
    if model_impl != "transformers" and not isinstance(model, torch.nn.Module):
        loaded = _load_native(model, tokenizer, config, kernel, dtype, device, strict=model_impl == "native")
        if loaded is not None:
            return loaded
    elif model_impl == "native":
        raise ValueError("model_impl='native' loads a checkpoint directory; an already loaded model is used as it is")
    hf_model, hf_tokenizer = load_model(model, tokenizer, dtype=dtype, device=device)
    if kernel is not None:
        kernel.wait()
    return hf_model, hf_tokenizer


def _load_native(model: str | os.PathLike[str] | None, tokenizer: Any, config: EngineConfig,
                 kernel: KernelPrebuild | None, dtype: str | torch.dtype, device: str | torch.device | None,
                 strict: bool) -> tuple[nn.Module, PreTrainedTokenizerBase] | None:
    source = model_source(model)

    def refuse(reason: str) -> None:
        if strict:
            raise ValueError(f"model_impl='native' cannot load {source}: {reason}")
        logger.info("%s loads with transformers' model classes: %s", source, reason)

    directory = Path(source)
    if not (directory / "config.json").is_file():
        return refuse("it is not a local checkpoint directory")
    if not (config.cpu_attention_kernel and config.cpu_fused_layers):
        return refuse("the engine's fused CPU layers are turned off")
    try:
        hf_config = read_config(directory)
    except NativeLoadError as exc:
        return refuse(str(exc))
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, config_dtype(hf_config), target)
    problem = native_problem(hf_config, target, torch_dtype)
    if problem is not None:
        return refuse(problem)
    with StartupPhase("load", f"loading the weights of {source} ({str(torch_dtype).removeprefix('torch.')}, "
                              "cpu, ChatStream's Llama-family modules)"):
        try:
            loaded = load_native_model(directory, hf_config, torch_dtype, _generation_config(directory, hf_config),
                                       name_or_path=source)
        except NativeLoadError as exc:
            return refuse(str(exc))
    kernels_built = kernel.wait() if kernel is not None else load_cpu_ops() is not None
    if not kernels_built:
        del loaded
        return refuse("the compiled CPU kernels are not available here")
    if tokenizer is None:
        # The config we read goes with it: left to find its own, the tokenizer would read it with the family's
        # config class (see native_loader.py for why not).
        return loaded, AutoTokenizer.from_pretrained(source, config=hf_config)
    return loaded, load_tokenizer(tokenizer, source)


def _generation_config(directory: Path, hf_config: Any) -> GenerationConfig:
    """The checkpoint's generation defaults (its EOS ids above all), as transformers' loading finds them."""
    if (directory / "generation_config.json").is_file():
        return GenerationConfig.from_pretrained(directory)
    return GenerationConfig.from_model_config(hf_config)
