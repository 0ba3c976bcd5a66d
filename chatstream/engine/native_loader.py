"""Loading a Llama-family checkpoint into our own modules (`native_model.py`), and saying when we can.

Owns the rules for when a model may run without transformers' model classes (`native_problem`: a
local directory of safetensors, a supported family and shape, the CPU in fp32 or bf16), reading its
`config.json` and reading its tensors: every tensor the modules need, of the shape they need, and
nothing the modules would not use (a tensor we do not know about means the checkpoint is not the
model we think it is). A checkpoint that breaks a rule raises `NativeLoadError`, and the caller
decides whether transformers loads it instead.

The config is read into transformers' base `PretrainedConfig`, not the family's own class: in
transformers 5 importing any model's config class imports its weight-loading machinery with it
(`torch.distributed.tensor`, sympy; about 55 MiB resident). The base class takes the file's fields
as they are, so the fields whose default differs by family must be in the file (transformers writes
them there whenever it saves a model); a file without them, or with a RoPE variant other than the
plain one, is read by the family's class after all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig

from chatstream.engine.native_model import STATIC_ROPE_TYPES, NativeCausalLM, head_dim_of, rope_parameters

NATIVE_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2"})
NATIVE_DTYPES = (torch.float32, torch.bfloat16)
_SINGLE_FILE = "model.safetensors"
_INDEX_FILE = "model.safetensors.index.json"
# Tensors some checkpoints carry that the model computes instead of loading.
_COMPUTED_SUFFIXES = ("rotary_emb.inv_freq",)
# What the modules read whose default differs between the families (or is not the base config's).
_STATED_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "rms_norm_eps", "max_position_embeddings")
_WINDOWED_TYPES = frozenset({"mistral", "qwen2"})  # their sliding window defaults to 4096 when the file is silent


class NativeLoadError(ValueError):
    """The checkpoint cannot be loaded into our modules (the message says why)."""


def checkpoint_files(directory: Path) -> list[Path]:
    """The safetensors files of a local checkpoint directory (one file, or the shards its index names)."""
    single = directory / _SINGLE_FILE
    if single.is_file():
        return [single]
    index = directory / _INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as exc:
            raise NativeLoadError(f"{index} is not a safetensors index ({exc})") from exc
        # Shards are files beside the index: a name that is not a plain file name is not a checkpoint we read.
        if (not isinstance(weight_map, dict) or not weight_map
                or not all(isinstance(n, str) and n and Path(n).name == n and n not in (".", "..")
                           for n in weight_map.values())):
            raise NativeLoadError(f"{index} is not a safetensors index (its weight_map must map tensor names to "
                                  "shard file names in the same directory)")
        return [directory / name for name in sorted(set(weight_map.values()))]
    raise NativeLoadError(f"{directory} holds no {_SINGLE_FILE} or {_INDEX_FILE}")


def read_config(directory: Path) -> Any:
    """The checkpoint's config (see the module docstring for which class reads it)."""
    try:
        raw = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise NativeLoadError(f"{directory / 'config.json'} cannot be read ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("model_type") not in NATIVE_MODEL_TYPES:
        found = raw.get("model_type") if isinstance(raw, dict) else None
        raise NativeLoadError(f"model type {found!r} is not one of {sorted(NATIVE_MODEL_TYPES)}")
    _check_fields(raw, directory / "config.json")
    stated = [*_STATED_FIELDS, *(("sliding_window",) if raw["model_type"] in _WINDOWED_TYPES else ())]
    theta_stated = "rope_theta" in raw or "rope_theta" in (raw.get("rope_parameters") or {})
    scaling = raw.get("rope_scaling") or raw.get("rope_parameters") or {}
    plain_rope = scaling.get("rope_type", scaling.get("type", "default")) == "default"
    if any(field not in raw for field in stated) or not theta_stated or not plain_rope:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(directory)
    raw.setdefault("tie_word_embeddings", False)  # the families' default (the base class's is True)
    config = PretrainedConfig(**raw)
    config._name_or_path = str(directory)
    return config


def _check_fields(raw: dict[str, Any], path: Path) -> None:
    """Refuse a config whose fields the modules read have the wrong JSON type (a hand-edited file, say):
    sizes positive integers, the epsilon a number, the RoPE settings objects."""
    for field in _STATED_FIELDS:
        value = raw.get(field)
        if field == "rms_norm_eps":
            ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0)
        else:
            ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0)
        if not ok:
            kind = "a number >= 0" if field == "rms_norm_eps" else "a positive integer"
            raise NativeLoadError(f"{path}: {field} must be {kind}, got {value!r}")
    for field in ("rope_scaling", "rope_parameters"):
        if raw.get(field) is not None and not isinstance(raw[field], dict):
            raise NativeLoadError(f"{path}: {field} must be an object or null, got {type(raw[field]).__name__}")


def native_problem(config: Any, device: torch.device, dtype: torch.dtype) -> str | None:
    """Why a model with this config cannot run on our modules on `device` in `dtype`, or None when it can."""
    model_type = getattr(config, "model_type", None)
    if model_type not in NATIVE_MODEL_TYPES:
        return f"model type {model_type!r} is not one of {sorted(NATIVE_MODEL_TYPES)}"
    if device.type != "cpu":
        return f"the fused layers run on the CPU, not {device.type}"
    if dtype not in NATIVE_DTYPES:
        return f"the fused layers run fp32 or bf16, not {str(dtype).removeprefix('torch.')}"
    if getattr(config, "quantization_config", None):
        return "the checkpoint is quantized"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r} is not SiLU"
    if (getattr(config, "pretraining_tp", 1) or 1) > 1:
        return "pretraining_tp > 1"
    if head_dim_of(config) % 2:
        return "the head size is odd"
    rope_type = rope_parameters(config)["rope_type"]
    if rope_type not in STATIC_ROPE_TYPES:
        return f"RoPE type {rope_type!r} changes with the sequence length"
    return None


def _assign(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    owner_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_name)
    setattr(owner, leaf, nn.Parameter(tensor, requires_grad=False))


def load_native_model(directory: Path, config: Any, dtype: torch.dtype, generation_config: Any = None,
                      name_or_path: str = "") -> NativeCausalLM:
    """The checkpoint in `directory` as a `NativeCausalLM` in `dtype` on the CPU (see the module docstring)."""
    problem = native_problem(config, torch.device("cpu"), dtype)
    if problem is not None:
        raise NativeLoadError(problem)
    files = checkpoint_files(directory)
    from safetensors import safe_open  # imported with transformers anyway; here only when a load needs it

    with torch.device("meta"):
        model = NativeCausalLM(config, dtype, name_or_path, generation_config)
    wanted = {name: tuple(p.shape) for name, p in model.named_parameters()}
    tied = bool(getattr(config, "tie_word_embeddings", False))
    if tied:
        del wanted["lm_head.weight"]  # the embedding, below
    unexpected: list[str] = []
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as tensors:
            for name in tensors.keys():  # noqa: SIM118 - safe_open is not a mapping
                if name.endswith(_COMPUTED_SUFFIXES) or (tied and name == "lm_head.weight"):
                    continue
                shape = wanted.pop(name, None)
                if shape is None:
                    unexpected.append(name)
                    continue
                tensor = tensors.get_tensor(name)
                if tuple(tensor.shape) != shape:
                    raise NativeLoadError(f"{name} in {file.name} has shape {tuple(tensor.shape)}, the config says "
                                          f"{shape}")
                _assign(model, name, tensor.to(dtype))
    if unexpected:
        raise NativeLoadError(f"the checkpoint has tensors a {config.model_type} model does not use: "
                              f"{', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
    if wanted:
        missing = sorted(wanted)
        raise NativeLoadError(f"the checkpoint lacks {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if tied:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.finish()
    return model.eval()
