"""Replay: the real engine, serving a recording instead of a model.

Owns `ReplayRunner`, the `StepRunner` that replay plugs into an ordinary `EngineCore`.
Everything around it is the real thing: the Scheduler (continuous batching, chunked prefill,
preemption), the BlockManager (prefix cache), the Sampler, the detokenizer and stop strings.
Only the logits come from the recording: for each request that reaches its last token in a step,
the runner returns a row that is -inf everywhere except 0.0 at the recorded next token. Every
sampler step keeps that token the unique finite maximum (penalties scale or shift 0.0 but leave
-inf as -inf; temperature, top-k, top-p and min-p always keep the best token), so whatever the
live sampling settings, the seed, the order or the batching, the engine produces the recorded
tokens exactly. There are no weights and no KV tensors; `kv_cache` is a size-0 stand-in that
gives the block manager its block count.

Which recording a live request follows, and the error when there is none, is the job of
`RecordingMatcher` (see there); the runner asks it when the engine admits a request. A live
request never runs past its recording: its max_tokens is capped at the recorded output length,
so e.g. a recording that ended by an abort replays as a "length" finish at the same token. Errors
are raised from `add_request` (ValueError, which the AsyncEngine delivers to that request's
consumer only); a step never raises for replay reasons.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from chatstream.engine.config import EngineConfig
from chatstream.engine.engine_core import EngineCore
from chatstream.engine.request import Request
from chatstream.engine.scheduler import SchedulerOutput
from chatstream.mock.recording import RecordedRequest, Recording
from chatstream.mock.replay_matcher import RecordingMatcher, ReplayDivergence
from chatstream.mock.transformer_mock import ReplayModel

__all__ = ["ReplayDivergence", "ReplayEngineCore", "ReplayKVCache", "ReplayRunner"]


@dataclass(frozen=True)
class ReplayKVCache:
    """Stands where the KV cache would be: block counts for reports, no memory."""

    num_blocks: int
    block_size: int
    size_bytes: int = 0


class ReplayRunner:
    """Turns a `SchedulerOutput` into logits rows that allow only the recorded next tokens."""

    def __init__(self, recording: Recording, tokenizer: Any, config: EngineConfig,
                 wait_sec: float | None = None) -> None:
        manifest = recording.manifest
        self.recording = recording
        self.wait_sec = wait_sec
        self.vocab_size = manifest.vocab_size
        self.eos_token_ids = frozenset(manifest.eos_token_ids)
        self.model_len = manifest.max_model_len
        if config.max_model_len is not None:
            self.model_len = min(self.model_len, config.max_model_len)
        # Blocks cost nothing here, so give every sequence slot room for a full context.
        num_blocks = config.num_kv_blocks or -(-config.max_num_seqs * self.model_len // config.block_size)
        self.kv_cache = ReplayKVCache(num_blocks, config.block_size)
        self.matcher = RecordingMatcher(recording.requests, tokenizer, manifest.eos_token_ids)
        self._followed: dict[Request, RecordedRequest] = {}

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def admit(self, request: Request) -> None:
        """Follow the recorded request with this prompt; raises ReplayDivergence when there is none."""
        if request.params.prompt_logprobs is not None:
            raise ValueError("prompt_logprobs needs the model's logits for the prompt, which a recording lacks")
        recorded = self.matcher.match(request.request_id, request.prompt_token_ids, request.params)
        request.max_tokens = min(request.max_tokens, len(recorded.output_token_ids))
        self._followed[request] = recorded

    def release(self, request: Request) -> None:
        self._followed.pop(request, None)

    def execute(self, output: SchedulerOutput) -> tuple[torch.Tensor, list[Request]]:
        """Return float32 logits `[N, V]` and the N requests that reach their last token this step."""
        if self.wait_sec:
            time.sleep(self.wait_sec)  # the emulated model latency: once per step, like one forward pass
        sampled = [s.request for s in output.scheduled if s.completes_sequence]
        logits = torch.full((len(sampled), self.vocab_size), -math.inf, dtype=torch.float32)
        for row, request in enumerate(sampled):
            # Always within the recording: admit capped max_tokens at its length.
            logits[row, self._followed[request].output_token_ids[request.num_output_tokens]] = 0.0
        return logits, sampled

    def describe(self) -> str:
        return (f"replaying {len(self.recording.requests)} recorded requests of {self.recording.manifest.model} "
                f"from {self.recording.path} (no model)")


def ReplayEngineCore(recording: Recording, tokenizer: Any, config: EngineConfig,  # noqa: N802 - its name of old
                     wait_sec: float | None = None) -> EngineCore:
    """An `EngineCore` whose tokens come from `recording`: a plain engine with a `ReplayRunner`."""
    runner = ReplayRunner(recording, tokenizer, config, wait_sec)
    return EngineCore(ReplayModel(recording, wait_sec), tokenizer, config, runner=runner)
