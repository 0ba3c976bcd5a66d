"""A causal LM with weights (transformers' classes or our Llama-family modules) as the engine's `StepRunner`.

Owns what a real model needs before its first step: the KV cache sized to the memory budget (or
to `num_kv_blocks`; by default 70 % of the memory free once the weights are ready), the context
length the model allows, its EOS ids, and the one-time preparation of its linear weights (prepacked
on CPU, or int8: `model_weights.py`). Each step is then run by `ModelRunner`, which packs it into
one forward pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from chatstream.engine.config import EngineConfig
from chatstream.engine.cpu_attention import load_cpu_ops
from chatstream.engine.kv_cache import GIB, KVCache, KVCacheSpec, default_kv_budget
from chatstream.engine.model_runner import ModelRunner
from chatstream.engine.model_weights import prepare_weights
from chatstream.engine.native_model import NativeCausalLM
from chatstream.engine.request import Request
from chatstream.engine.scheduler import SchedulerOutput
from chatstream.engine.step_runner import StepLogits

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def eos_token_ids(model: Any, tokenizer: PreTrainedTokenizerBase | None) -> frozenset[int]:
    """The ids that end generation: the model's generation config's and the tokenizer's."""
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    for source in (getattr(gen, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(int(i) for i in source)
    return frozenset(ids)


def model_len(text_config: Any, config: EngineConfig) -> int:
    """The context the engine may use: `max_model_len` or the model's own, within its sliding window."""
    length = getattr(text_config, "max_position_embeddings", None) or 2048
    if config.max_model_len is not None:
        length = config.max_model_len
    # Sliding-window attention is not implemented; staying within the window makes full
    # attention exact.
    window = getattr(text_config, "sliding_window", None)
    if window and getattr(text_config, "use_sliding_window", True):
        length = min(length, window)
    return length


class HFStepRunner:
    """Runs a HuggingFace model's steps over a paged KV cache of its own."""

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerBase | None,
                 config: EngineConfig) -> None:
        self.model = model
        text_config = model.config.get_text_config()
        head = model.get_output_embeddings()
        # out_features, where it exists, needs no dense weight (a head already prepacked by an earlier engine).
        self.vocab_size: int = getattr(head, "out_features", None) or head.weight.shape[0]
        # Weights first: prepacking and quantizing change how much memory is left for the KV cache.
        # Our compiled CPU kernels (fp32 products, int8 products of a few rows) where they are allowed; one build per
        # process, the same the decode kernel needs anyway.
        ops = load_cpu_ops() if config.cpu_attention_kernel and model.device.type == "cpu" else None
        self.matmul_path = prepare_weights(model, config.quantization, config.cpu_prepack_weights, ops)
        spec = KVCacheSpec.from_config(text_config, model.dtype)
        self.model_len = model_len(text_config, config)
        self.budget_note = "num_kv_blocks"
        if config.num_kv_blocks is not None:
            num_blocks = config.num_kv_blocks
        else:
            if config.kv_cache_memory_gb:
                budget, self.budget_note = int(config.kv_cache_memory_gb * GIB), "kv_cache_memory_gb"
            else:
                budget, self.budget_note = default_kv_budget(model.device)
            num_blocks = KVCache.num_blocks_for(spec, config.block_size, budget)
            # More blocks than every sequence slot can fill at full context would only cost memory.
            num_blocks = min(num_blocks, -(-config.max_num_seqs * self.model_len // config.block_size))
        if num_blocks < 1:
            raise ValueError("the KV cache budget is too small for a single block")
        self.kv_cache = KVCache(spec, num_blocks, config.block_size, model.device)
        self.eos_token_ids = eos_token_ids(model, tokenizer)
        self.model_runner = ModelRunner(model, self.kv_cache, use_cpu_kernel=config.cpu_attention_kernel,
                                        fuse_layers=config.cpu_fused_layers)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def execute(self, output: SchedulerOutput) -> StepLogits:
        return self.model_runner.execute(output)

    def admit(self, request: Request) -> None:
        """Every request the engine validated can run on the model."""

    def release(self, request: Request) -> None:
        """Nothing is kept per request outside the KV blocks, which the block manager frees."""

    def describe(self) -> str:
        kv = self.kv_cache
        held = ("ChatStream's Llama-family modules" if isinstance(self.model, NativeCausalLM)
                else f"transformers' {type(self.model).__name__}")
        return (f"model: {held}; {self.matmul_path}; decode attention: {self.model_runner.decode_path}; "
                f"prompt attention: {self.model_runner.prefill_path}; decode layers: {self.model_runner.layers_path}; "
                f"KV cache: {kv.num_blocks} blocks x {kv.block_size} tokens = {kv.num_blocks * kv.block_size} tokens, "
                f"{kv.size_bytes / GIB:.2f} GiB ({self.model.device}, {str(self.model.dtype).removeprefix('torch.')}; "
                f"budget from {self.budget_note})")
