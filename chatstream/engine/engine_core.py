"""The synchronous engine: add requests, `step()` them forward, abort them.

One step reads as three calls: the scheduler picks the requests and their token counts, the model
runner computes the logits, the sampler picks the tokens; then each sampled request is checked
against its stop conditions, detokenized, and finished requests give their blocks back.

EngineCore is not thread-safe: exactly one thread (the `AsyncEngine`'s, or the caller of
`LLM.generate`) drives it. Validation happens in `add_request`, before anything is queued, so bad
input raises `ValueError` in the caller and can never break a step.

Failure is confined to the request that caused it: when one request's part of a step fails (its
sampling, its stop checks and text, the recorder's view of it) that request ends with finish
reason "error" and an `error` message, its blocks are freed, and the step's other requests go on
(`confinement.py`). `step()` raises only for what is no request's fault (scheduling, the model's
forward pass): then the engine itself is broken.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from chatstream.config import EngineConfig
from chatstream.engine.block_manager import BlockManager
from chatstream.engine.confinement import RequestFailure, describe, record_step_each, sample_each
from chatstream.engine.cpu_weights import prepack_linear_weights
from chatstream.engine.detokenizer import IncrementalDetokenizer
from chatstream.engine.kv_cache import GIB, KVCache, KVCacheSpec, default_kv_budget_bytes
from chatstream.engine.model_runner import ModelRunner
from chatstream.engine.request import Request
from chatstream.engine.sampler import Sampler, SamplingRow
from chatstream.engine.scheduler import Scheduler
from chatstream.engine.step_recorder import StepRecorder
from chatstream.outputs import FinishReason, RequestDelta
from chatstream.sampling_params import SamplingParams

logger = logging.getLogger("chatstream.engine")


@dataclass
class EngineStats:
    num_prompt_tokens: int = 0
    num_generation_tokens: int = 0
    num_finished_requests: int = 0


def _eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None) -> frozenset[int]:
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    for source in (getattr(gen, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(int(i) for i in source)
    return frozenset(ids)


class EngineCore:
    """Continuous batching over a paged KV cache for one HuggingFace causal LM."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None, config: EngineConfig) -> None:
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        text_config = model.config.get_text_config()
        spec = KVCacheSpec.from_config(text_config, model.dtype)
        model_len = self._model_len(text_config)
        if config.num_kv_blocks is not None:
            num_blocks = config.num_kv_blocks
        else:
            budget = (int(config.kv_cache_memory_gb * GIB) if config.kv_cache_memory_gb
                      else default_kv_budget_bytes(model.device))
            num_blocks = KVCache.num_blocks_for(spec, config.block_size, budget)
            # More blocks than every sequence slot can fill at full context would only cost memory.
            num_blocks = min(num_blocks, -(-config.max_num_seqs * model_len // config.block_size))
        if num_blocks < 1:
            raise ValueError("the KV cache budget is too small for a single block")
        self.kv_cache = KVCache(spec, num_blocks, config.block_size, model.device)
        self._init_scheduling(num_blocks, model.get_output_embeddings().weight.shape[0],
                              _eos_token_ids(model, tokenizer), model_len)
        if config.cpu_prepack_weights and model.device.type == "cpu":
            prepack_linear_weights(model)
        self.runner = ModelRunner(model, self.kv_cache, use_cpu_kernel=config.cpu_attention_kernel)
        logger.info(
            "KV cache: %d blocks x %d tokens = %d tokens, %.2f GiB (%s, %s); max_model_len=%d, "
            "so %.1f sequences of full length fit at once",
            num_blocks, config.block_size, num_blocks * config.block_size, self.kv_cache.size_bytes / GIB,
            model.device, str(model.dtype).removeprefix("torch."), self.max_model_len,
            num_blocks * config.block_size / self.max_model_len,
        )

    def _init_scheduling(self, num_blocks: int, vocab_size: int, eos_token_ids: frozenset[int],
                         model_len: int) -> None:
        """The parts every engine shares, whatever computes its logits (see `ReplayEngineCore`)."""
        config = self.config
        self.block_manager = BlockManager(num_blocks, config.block_size, config.enable_prefix_caching)
        self.scheduler = Scheduler(self.block_manager, config.max_num_seqs, config.max_num_batched_tokens)
        self.vocab_size = vocab_size
        self.sampler = Sampler(vocab_size)
        self.eos_token_ids = eos_token_ids
        # A request must fit in the cache on its own, or it could never be scheduled.
        self.max_model_len = min(model_len, num_blocks * config.block_size)
        self.requests: dict[str, Request] = {}
        self.stats = EngineStats()
        # Set by `chatstream.mock.recorder.attach_recorder`; None costs one check per call site.
        self.recorder: StepRecorder | None = None
        self.recording_dir: Path | None = None

    def _model_len(self, text_config: object) -> int:
        model_len = getattr(text_config, "max_position_embeddings", None) or 2048
        if self.config.max_model_len is not None:
            model_len = self.config.max_model_len
        # Sliding-window attention is not implemented; staying within the window makes full
        # attention exact.
        window = getattr(text_config, "sliding_window", None)
        if window and getattr(text_config, "use_sliding_window", True):
            model_len = min(model_len, window)
        return model_len

    # -- requests ----------------------------------------------------------------------------
    def add_request(
        self,
        request_id: str,
        prompt_token_ids: Sequence[int],
        params: SamplingParams | None = None,
        prompt: str | None = None,
    ) -> Request:
        params = params or SamplingParams()
        if request_id in self.requests:
            raise ValueError(f"request_id {request_id!r} is already in use")
        ids = [int(t) for t in prompt_token_ids]
        self.validate_prompt(ids)
        room = self.max_model_len - len(ids)
        max_tokens = room if params.max_tokens is None else min(params.max_tokens, room)
        detok = IncrementalDetokenizer(self.tokenizer, ids, params) if self.tokenizer is not None else None
        request = Request(request_id, ids, params, max_tokens, self.eos_token_ids, prompt, detok)
        if self.recorder is not None:
            self.recorder.on_add(request)  # before queueing: if it raises, the request was never added
        self.requests[request_id] = request
        self.scheduler.add_request(request)
        self.stats.num_prompt_tokens += len(ids)
        return request

    def validate_prompt(self, ids: Sequence[int]) -> None:
        """Raise ValueError unless `ids` is a prompt this engine can serve.

        Safe to call from any thread: it reads only values fixed at start-up.
        """
        if not ids:
            raise ValueError("prompt must contain at least one token")
        if len(ids) >= self.max_model_len:
            raise ValueError(
                f"prompt is {len(ids)} tokens but the context holds max_model_len={self.max_model_len}: "
                f"the prompt must be at most {self.max_model_len - 1} tokens"
            )
        bad = next((t for t in ids if not 0 <= t < self.vocab_size), None)
        if bad is not None:
            raise ValueError(f"prompt token id {bad} is out of range [0, {self.vocab_size})")

    def abort_request(self, request_id: str) -> RequestDelta | None:
        """Stop a request now and free its blocks; returns its final delta (None if unknown)."""
        request = self.requests.get(request_id)
        if request is None:
            return None
        request.finish("abort")
        try:
            return self._finish(request, [], None)
        except Exception as exc:  # noqa: BLE001 - its last text failed: confined to it
            return self._fail(request, f"ending the request failed: {describe(exc)}", exc)

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished_requests()

    # -- the step ----------------------------------------------------------------------------
    def step(self) -> list[RequestDelta]:
        output = self.scheduler.schedule()
        if output.is_empty:
            return []
        logits, sampled = self.runner.execute(output)
        self.scheduler.update_after_step(output)
        if not sampled:
            return []
        tokens = sample_each(self.sampler, logits, [self._sampling_row(r) for r in sampled])
        if self.recorder is not None:
            record_step_each(self.recorder, sampled, logits, tokens)
        deltas = []
        for request, token in zip(sampled, tokens):
            if isinstance(token, RequestFailure):
                deltas.append(self._fail(request, token.message))
                continue
            try:
                deltas.append(self._process_token(request, token))
            except Exception as exc:  # noqa: BLE001 - its stop checks or text failed: confined to it
                deltas.append(self._fail(request, f"processing its token failed: {describe(exc)}", exc))
        return deltas

    def _sampling_row(self, request: Request) -> SamplingRow:
        p = request.params
        blocked: Sequence[int] = ()
        if request.num_output_tokens < p.min_tokens:
            blocked = list(p.stop_token_ids) + ([] if p.ignore_eos else list(request.eos_token_ids))
        return SamplingRow(p, request.prompt_token_ids, request.output_token_ids, blocked)

    def _process_token(self, request: Request, token_id: int) -> RequestDelta:
        request.append_output_token(token_id)
        self.stats.num_generation_tokens += 1
        p = request.params
        n_out = request.num_output_tokens
        reason: FinishReason | None = None
        stop_reason: str | int | None = None
        detok = request.detokenizer
        if not p.ignore_eos and token_id in request.eos_token_ids and n_out >= p.min_tokens:
            reason = "stop"
        elif token_id in p.stop_token_ids and n_out >= p.min_tokens:
            reason, stop_reason = "stop", token_id
        elif detok is not None:
            matched = detok.update([token_id])
            if matched is not None and n_out >= p.min_tokens:
                reason, stop_reason = "stop", matched
        if reason is None and (n_out >= request.max_tokens or request.num_tokens >= self.max_model_len):
            reason = "length"
        if reason is None:
            text = detok.take_delta(finished=False) if detok is not None else ""
            return self._delta(request, [token_id], text)
        request.finish(reason, stop_reason)
        return self._finish(request, [token_id], None)

    def _finish(self, request: Request, new_token_ids: list[int], text: str | None) -> RequestDelta:
        """Release a finished request; `text` None takes the detokenizer's last text (which may raise first)."""
        if text is None:
            text = request.detokenizer.take_delta(finished=True) if request.detokenizer is not None else ""
        self.scheduler.finish_request(request)
        del self.requests[request.request_id]
        self.stats.num_finished_requests += 1
        if self.recorder is not None:
            try:
                self.recorder.on_finish(request)
            except Exception:  # noqa: BLE001 - the reply is complete; only its recording is lost
                logger.exception("the recorder failed at the end of request %r", request.request_id)
        return self._delta(request, new_token_ids, text)

    def _fail(self, request: Request, message: str, exc: BaseException | None = None) -> RequestDelta:
        """End `request` with finish reason "error" (its blocks freed); the engine goes on."""
        if exc is not None:
            logger.error("request %r failed: %s", request.request_id, message, exc_info=exc)
        else:
            logger.error("request %r failed: %s", request.request_id, message)
        request.finish("error")
        request.error = message
        if request.request_id in self.requests:
            self._finish(request, [], "")
        return self._delta(request, [], "")

    @staticmethod
    def _delta(request: Request, new_token_ids: list[int], text: str) -> RequestDelta:
        return RequestDelta(
            request_id=request.request_id,
            new_token_ids=new_token_ids,
            new_text=text,
            finished=request.is_finished,
            finish_reason=request.finish_reason,
            num_prompt_tokens=request.num_prompt_tokens,
            num_cached_tokens=max(0, request.num_cached_tokens),
            num_output_tokens=request.num_output_tokens,
            stop_reason=request.stop_reason,
            error=request.error,
        )
