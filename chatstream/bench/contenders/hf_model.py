"""What the HuggingFace-based contenders share: loading the model the same way, greedy settings that always
produce exactly `output_len` tokens, and a streamer that timestamps every generated token.

Owns `load_causal_lm`, `greedy_config`, `TimingStreamer` and `kv_bytes_per_token`.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

import torch
from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedModel
from transformers.generation.streamers import BaseStreamer

from chatstream.bench.protocol import BenchJob, RequestTiming


def load_causal_lm(job: BenchJob, **kwargs: Any) -> PreTrainedModel:
    torch.set_num_threads(job.threads)
    model = AutoModelForCausalLM.from_pretrained(job.model, dtype=getattr(torch, job.dtype), **kwargs)
    # Same placement rule as our engine's loader: the GPU when there is one.
    if torch.cuda.is_available() and "device_map" not in kwargs:
        model = model.to("cuda")
    return model.eval()


def pad_token_id(model: PreTrainedModel) -> int:
    config = model.generation_config
    for candidate in (config.pad_token_id, model.config.pad_token_id, config.eos_token_id, 0):
        if isinstance(candidate, list):
            candidate = candidate[0] if candidate else None
        if candidate is not None:
            return int(candidate)
    return 0


def greedy_config(model: PreTrainedModel, num_tokens: int) -> GenerationConfig:
    """Greedy decoding of exactly `num_tokens` tokens: min_new_tokens masks EOS until the last one.

    A fresh config (not the model's) so a checkpoint's sampling defaults cannot leak in."""
    return GenerationConfig(
        max_new_tokens=num_tokens,
        min_new_tokens=num_tokens,
        do_sample=False,
        pad_token_id=pad_token_id(model),
        eos_token_id=model.generation_config.eos_token_id,
    )


class TimingStreamer(BaseStreamer):
    """Records, for each row of a `generate` batch, when each token came out (seconds since `t0`)."""

    def __init__(self, t0: float, batch_size: int) -> None:
        self.t0 = t0
        self.times: list[list[float]] = [[] for _ in range(batch_size)]
        self.token_ids: list[list[int]] = [[] for _ in range(batch_size)]
        self._seen_prompt = False

    def put(self, value: torch.Tensor) -> None:
        now = perf_counter() - self.t0
        # generate() first hands over the prompt itself; only later calls are new tokens.
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            self.times[row].append(now)
            self.token_ids[row].append(int(token))

    def end(self) -> None:
        pass

    def timings(self) -> list[RequestTiming]:
        return [
            RequestTiming(num_output_tokens=len(times), finish_s=times[-1] if times else 0.0,
                          token_times=times, output_token_ids=ids)
            for times, ids in zip(self.times, self.token_ids)
        ]


def kv_bytes_per_token(config: Any, dtype_bytes: int) -> int:
    """Bytes of K and V one token occupies across all layers of a (text) model config."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return 2 * text.num_hidden_layers * kv_heads * head_dim * dtype_bytes
