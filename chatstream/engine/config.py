"""Engine configuration: one frozen dataclass built once from CLI/constructor options.

Values derived at start-up (the number of KV blocks, the effective context length) live on the
components that derive them, never written back here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

LOGPROBS_MODES: tuple[str, ...] = ("raw", "processed")
# Options that say how to load the model rather than how to run the engine (`model_impl`: `model_impl.py`);
# `builder.engine_config` splits them off.
LOAD_OPTIONS: tuple[str, ...] = ("dtype", "device", "model_impl")


@dataclass(frozen=True)
class EngineConfig:
    """Options of the engine (every field has a default suited to a small CPU machine).

    block_size: tokens per KV block.
    kv_cache_memory_gb: memory budget for the KV cache; None sizes it from what is free once the
        weights are ready (70 % of the available RAM on CPU, of the free device memory on CUDA).
    num_kv_blocks: exact number of KV blocks (overrides the memory budget; used by tests).
    max_num_seqs: cap on sequences running in one step.
    max_num_batched_tokens: the per-step token budget shared by decodes and (chunked) prefills.
    max_model_len: context length; None takes the model's own.
    enable_prefix_caching: share full KV blocks between requests with equal prefixes.
    cpu_prepack_weights: on CPU, store fp32/bf16 linear weights once in a layout made for the
        product: our panels for fp32 where the compiled kernels are allowed and the CPU has AVX-512,
        oneDNN's blocked layout otherwise (faster small-batch matrix products; the dense originals
        are dropped).
    cpu_attention_kernel: on CPU, use our compiled kernels (built on first use): decode attention in
        fp32/bf16, the fp32 panel product and the int8 product of a few rows; without a compiler the
        engine falls back to SDPA and PyTorch's products.
    cpu_fused_layers: on CPU, run the steps of Llama-family models through fused layer operations
        instead of HF's modules (`fused_decoder.py`; needs the kernel and prepared weights; steps
        that keep prompt log-probs still run HF's forward).
    warmup: run one short request through the engine before it serves (a server's first user
        then does not pay the one-time costs of the first forward passes).
    logprobs_mode: what reported log-probs are taken of: "raw" (the model's logits, as vLLM by
        default) or "processed" (the logits the sampler draws from: after blocked tokens, the
        grammar mask, logit bias, penalties and temperature; before top-k, top-p and min-p).
    quantization: None, or "int8" for weight-only per-channel int8 linear weights.
    """

    block_size: int = 16
    kv_cache_memory_gb: float | None = None
    num_kv_blocks: int | None = None
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 512
    max_model_len: int | None = None
    enable_prefix_caching: bool = True
    cpu_prepack_weights: bool = True
    cpu_attention_kernel: bool = True
    cpu_fused_layers: bool = True
    warmup: bool = False
    logprobs_mode: str = "raw"
    quantization: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            # A string such as "false" (from a command line or a config file) would silently count as True.
            if f.type == "bool" and not isinstance(getattr(self, f.name), bool):
                raise ValueError(f"{f.name} must be True or False, got {getattr(self, f.name)!r}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")
        if self.kv_cache_memory_gb is not None and self.kv_cache_memory_gb <= 0:
            raise ValueError(f"kv_cache_memory_gb must be > 0, got {self.kv_cache_memory_gb}")
        if self.num_kv_blocks is not None and self.num_kv_blocks < 1:
            raise ValueError(f"num_kv_blocks must be >= 1, got {self.num_kv_blocks}")
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.max_num_batched_tokens < 1:
            raise ValueError(f"max_num_batched_tokens must be >= 1, got {self.max_num_batched_tokens}")
        if self.logprobs_mode not in LOGPROBS_MODES:
            raise ValueError(f"logprobs_mode must be one of {', '.join(LOGPROBS_MODES)}, got {self.logprobs_mode!r}")
        if self.quantization not in (None, "int8"):
            raise ValueError(f"quantization must be None or 'int8', got {self.quantization!r}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {self.max_model_len}")

    @classmethod
    def split_options(cls, options: dict[str, Any]) -> tuple["EngineConfig", dict[str, Any]]:
        """Take the engine's options out of `options`; return the config and what is left."""
        names = {f.name for f in fields(cls)}
        mine = {k: v for k, v in options.items() if k in names}
        rest = {k: v for k, v in options.items() if k not in names}
        return cls(**mine), rest
