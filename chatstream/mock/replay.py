"""Replay: the real engine, serving a recording instead of a model.

Owns `ReplayEngineCore` and `ReplayRunner`. Everything around the model is the real thing: the
Scheduler (continuous batching, chunked prefill, preemption), the BlockManager (prefix cache),
the Sampler, the detokenizer and stop strings. Only the logits come from the recording: for each
request that reaches its last token in a step, the runner returns a row that is -inf everywhere
except 0.0 at the recorded next token. Every sampler step keeps that token the unique finite
maximum (penalties scale or shift 0.0 but leave -inf as -inf; temperature, top-k, top-p and
min-p always keep the best token), so whatever the live sampling settings, the seed, the order
or the batching, the engine produces the recorded tokens exactly. There are no weights and no
KV tensors; `kv_cache` is a size-0 stand-in for code that reports the cache.

Which recording a live request follows, and the error when there is none, is the job of
`RecordingMatcher` (see there). A live request never runs past its recording: its max_tokens is
capped at the recorded output length, so e.g. a recording that ended by an abort replays as a
"length" finish at the same token. Errors are raised from `add_request` (ValueError, which the
AsyncEngine delivers to that request's consumer only); a step never raises for replay reasons.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
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
from chatstream.engine.outputs import RequestDelta
from chatstream.engine.sampling_params import SamplingParams

__all__ = ["ReplayDivergence", "ReplayEngineCore", "ReplayKVCache", "ReplayRunner"]

logger = logging.getLogger("chatstream.engine")


@dataclass(frozen=True)
class ReplayKVCache:
    """Stands where the KV cache would be: block counts for reports, no memory."""

    num_blocks: int
    block_size: int
    size_bytes: int = 0


class ReplayRunner:
    """Turns a `SchedulerOutput` into logits rows that allow only the recorded next tokens."""

    def __init__(self, vocab_size: int, wait_sec: float | None = None) -> None:
        self.vocab_size = vocab_size
        self.wait_sec = wait_sec
        self._followed: dict[Request, RecordedRequest] = {}

    def follow(self, request: Request, recorded: RecordedRequest) -> None:
        self._followed[request] = recorded

    def forget(self, request: Request) -> None:
        self._followed.pop(request, None)

    def execute(self, output: SchedulerOutput) -> tuple[torch.Tensor, list[Request]]:
        """Return float32 logits `[N, V]` and the N requests that reach their last token this step."""
        if self.wait_sec:
            time.sleep(self.wait_sec)  # the emulated model latency: once per step, like one forward pass
        sampled = [s.request for s in output.scheduled if s.completes_sequence]
        logits = torch.full((len(sampled), self.vocab_size), -math.inf, dtype=torch.float32)
        for row, request in enumerate(sampled):
            # Always within the recording: add_request capped max_tokens at its length.
            logits[row, self._followed[request].output_token_ids[request.num_output_tokens]] = 0.0
        return logits, sampled


class ReplayEngineCore(EngineCore):
    """An `EngineCore` whose tokens come from a `Recording`; needs no model and no weights."""

    def __init__(self, recording: Recording, tokenizer: Any, config: EngineConfig,
                 wait_sec: float | None = None) -> None:
        manifest = recording.manifest
        self.config = config
        self.recording = recording
        self.model = ReplayModel(recording, wait_sec)
        self.tokenizer = tokenizer
        model_len = manifest.max_model_len
        if config.max_model_len is not None:
            model_len = min(model_len, config.max_model_len)
        # Blocks cost nothing here, so give every sequence slot room for a full context.
        num_blocks = config.num_kv_blocks or -(-config.max_num_seqs * model_len // config.block_size)
        self.kv_cache = ReplayKVCache(num_blocks, config.block_size)
        self._init_scheduling(num_blocks, manifest.vocab_size, frozenset(manifest.eos_token_ids), model_len)
        self.runner = ReplayRunner(manifest.vocab_size, wait_sec)
        self.matcher = RecordingMatcher(recording.requests, tokenizer, manifest.eos_token_ids)
        logger.info("replaying %d recorded requests of %s from %s (no model); max_model_len=%d",
                    len(recording.requests), manifest.model, recording.path, self.max_model_len)

    @classmethod
    def from_model(cls, model: ReplayModel, tokenizer: Any, config: EngineConfig) -> "ReplayEngineCore":
        """The engine for `model`; `tokenizer` None takes the recorded one, a string is loaded from there."""
        if tokenizer is None:
            tokenizer = model.recording.load_tokenizer()
        elif isinstance(tokenizer, str):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        return cls(model.recording, tokenizer, config, model.wait_sec)

    def add_request(
        self,
        request_id: str,
        prompt_token_ids: Sequence[int],
        params: SamplingParams | None = None,
        prompt: str | None = None,
    ) -> Request:
        params = params or SamplingParams()
        ids = [int(t) for t in prompt_token_ids]
        # Checked before matching, so a refused request does not use up a recording's turn.
        if request_id in self.requests:
            raise ValueError(f"request_id {request_id!r} is already in use")
        self.validate_prompt(ids)
        recorded = self.matcher.match(request_id, ids, params)
        request = super().add_request(request_id, ids, params, prompt)
        request.max_tokens = min(request.max_tokens, len(recorded.output_token_ids))
        self.runner.follow(request, recorded)
        return request

    def _finish(self, request: Request, new_token_ids: list[int], text: str | None) -> RequestDelta:
        self.runner.forget(request)
        return super()._finish(request, new_token_ids, text)
