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
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from chatstream.engine.config import EngineConfig
from chatstream.engine.block_manager import BlockManager
from chatstream.engine.confinement import RequestFailure, describe, record_step_each, sample_each
from chatstream.engine.detokenizer import IncrementalDetokenizer
from chatstream.engine.grammar_compiler import GrammarCompiler
from chatstream.engine.grammar_matcher import GrammarMatcher
from chatstream.engine.hf_step_runner import HFStepRunner
from chatstream.engine.logprobs import TokenLogprobs
from chatstream.engine.request import Request
from chatstream.engine.sampler import Sampler, SamplingRow
from chatstream.engine.scheduler import Scheduler
from chatstream.engine.stats import EngineCounters
from chatstream.engine.step_recorder import StepRecorder
from chatstream.engine.step_extras import grammar_bitmasks, output_logprobs, prompt_logprobs
from chatstream.engine.step_runner import RunnerSource, StepRunner
from chatstream.engine.outputs import FinishReason, RequestDelta, RequestTiming
from chatstream.engine.sampling_params import SamplingParams

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger("chatstream.engine")


class EngineCore:
    """Continuous batching over a paged KV cache for one model.

    `runner` computes each step's logits; by default an `HFStepRunner` over the HuggingFace
    `model`. Another runner (the Transformer Mock's replay) needs no weights: `model` is then the
    object that stands for the model, kept for reports.
    """

    def __init__(self, model: PreTrainedModel | nn.Module | RunnerSource, tokenizer: PreTrainedTokenizerBase | None,
                 config: EngineConfig, runner: StepRunner | None = None) -> None:
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        self.runner: StepRunner = (
            runner if runner is not None else HFStepRunner(model, tokenizer, config))  # type: ignore[arg-type]
        self.kv_cache = self.runner.kv_cache
        num_blocks = self.kv_cache.num_blocks
        self.block_manager = BlockManager(num_blocks, config.block_size, config.enable_prefix_caching)
        self.scheduler = Scheduler(self.block_manager, config.max_num_seqs, config.max_num_batched_tokens)
        self.vocab_size = self.runner.vocab_size
        self.sampler = Sampler(self.vocab_size)
        self.eos_token_ids = self.runner.eos_token_ids
        # Structured outputs' grammars; its cache and tokenizer view are built on first use.
        self.grammars = GrammarCompiler(tokenizer, self.vocab_size, self.eos_token_ids)
        # A request must fit in the cache on its own, or it could never be scheduled.
        self.max_model_len = min(self.runner.model_len, num_blocks * config.block_size)
        self.requests: dict[str, Request] = {}
        self.stats = EngineCounters()
        # Set by `chatstream.mock.recorder.attach_recorder`; None costs one check per call site.
        self.recorder: StepRecorder | None = None
        self.recording_dir: Path | None = None
        logger.info("%s; max_model_len=%d, so %.1f sequences of full length fit at once", self.runner.describe(),
                    self.max_model_len, num_blocks * config.block_size / self.max_model_len)

    @property
    def device(self) -> torch.device:
        """Where the runner computes (the model's device; CPU for a replay)."""
        return self.runner.device

    # -- requests ----------------------------------------------------------------------------
    def add_request(
        self,
        request_id: str,
        prompt_token_ids: Sequence[int],
        params: SamplingParams | None = None,
        prompt: str | None = None,
        grammar: GrammarMatcher | None = None,
    ) -> Request:
        """Queue a request. With `params.structured_output`, `grammar` is its matcher, compiled by
        `self.grammars` beforehand (off the engine thread); without one it is compiled here."""
        params = params or SamplingParams()
        if request_id in self.requests:
            raise ValueError(f"request_id {request_id!r} is already in use")
        ids = [int(t) for t in prompt_token_ids]
        self.validate_prompt(ids)
        self.validate_params(params)
        if params.structured_output is not None and grammar is None:
            grammar = self.grammars.compile(params.structured_output)
        room = self.max_model_len - len(ids)
        max_tokens = room if params.max_tokens is None else min(params.max_tokens, room)
        detok = IncrementalDetokenizer(self.tokenizer, ids, params) if self.tokenizer is not None else None
        request = Request(request_id, ids, params, max_tokens, self.eos_token_ids, prompt, detok,
                          grammar if params.structured_output is not None else None)
        self.runner.admit(request)  # may refuse it (ValueError: nothing is queued) or lower its max_tokens
        if self.recorder is not None:
            try:
                self.recorder.on_add(request)  # before queueing: if it refuses the request, nothing is queued
            except BaseException:
                self.runner.release(request)
                raise
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

    def validate_params(self, params: SamplingParams) -> None:
        """Raise ValueError unless this engine can honour `params` (beyond the checks `SamplingParams`
        makes itself): token ids within the vocabulary. Safe from any thread (start-up values only)."""
        bad = next((t for t in params.logit_bias or () if t >= self.vocab_size), None)
        if bad is not None:
            raise ValueError(f"logit_bias token id {bad} is out of range [0, {self.vocab_size})")

    def abort_request(self, request_id: str) -> RequestDelta | None:
        """Stop a request now and free its blocks; returns its final delta (None if unknown)."""
        request = self.requests.get(request_id)
        if request is None:
            return None
        request.finish("abort")
        return self._finish(request, [], "")

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished_requests()

    # -- the step ----------------------------------------------------------------------------
    def step(self) -> list[RequestDelta]:
        output = self.scheduler.schedule()
        if output.is_empty:
            return []
        logits, sampled, *rest = self.runner.execute(output)
        self.scheduler.update_after_step(output)
        # This step's per-request failures so far: its prompt log-probs, its grammar's mask.
        failed: dict[Request, RequestFailure] = prompt_logprobs(rest[0]) if rest and rest[0] else {}
        deltas = [self._fail(r, failure.message) for r, failure in failed.items() if r not in sampled]
        if not sampled:
            return deltas
        masks = grammar_bitmasks(sampled)
        failed.update((r, m) for r, m in zip(sampled, masks) if isinstance(m, RequestFailure))
        rows = [self._sampling_row(r, m if isinstance(m, torch.Tensor) else None) for r, m in zip(sampled, masks)]
        tokens = sample_each(self.sampler, logits, rows)
        tokens = [failed.get(r, t) for r, t in zip(sampled, tokens)]
        if self.recorder is not None:
            record_step_each(self.recorder, sampled, logits, tokens)
        logprobs = output_logprobs(self.sampler, self.config.logprobs_mode, logits, rows, tokens)
        for request, token, token_logprobs in zip(sampled, tokens, logprobs):
            failure = token if isinstance(token, RequestFailure) else token_logprobs
            if isinstance(failure, RequestFailure):
                deltas.append(self._fail(request, failure.message))
                continue
            try:
                deltas.append(self._process_token(request, token, token_logprobs))
            except Exception as exc:  # noqa: BLE001 - its stop checks or text failed: confined to it
                deltas.append(self._fail(request, f"processing its token failed: {describe(exc)}", exc))
        return deltas

    def _sampling_row(self, request: Request, bitmask: torch.Tensor | None) -> SamplingRow:
        p = request.params
        blocked: Sequence[int] = ()
        # A grammar decides itself when its output may end: min_tokens does not hold that back.
        if request.num_output_tokens < p.min_tokens and request.grammar is None:
            blocked = list(p.stop_token_ids) + ([] if p.ignore_eos else list(request.eos_token_ids))
        return SamplingRow(p, request.prompt_token_ids, request.output_token_ids, blocked, bitmask)

    def _process_token(self, request: Request, token_id: int, logprobs: TokenLogprobs | None) -> RequestDelta:
        request.append_output_token(token_id)
        self.stats.num_generation_tokens += 1
        p = request.params
        n_out = request.num_output_tokens
        grammar = request.grammar
        # A grammar decides itself when its output may end: min_tokens does not hold that back.
        min_tokens = 0 if grammar is not None else p.min_tokens
        if grammar is not None and not (token_id in p.stop_token_ids and token_id not in request.eos_token_ids):
            grammar.accept(token_id)  # a stop token (allowed once the output is complete) is not its own
        reason: FinishReason | None = None
        stop_reason: str | int | None = None
        detok = request.detokenizer
        if not p.ignore_eos and token_id in request.eos_token_ids and n_out >= min_tokens:
            reason = "stop"
        elif token_id in p.stop_token_ids and n_out >= min_tokens:
            reason, stop_reason = "stop", token_id
        elif detok is not None:
            matched = detok.update([token_id])
            if matched is not None and n_out >= min_tokens:
                reason, stop_reason = "stop", matched
        if reason is None and (n_out >= request.max_tokens or request.num_tokens >= self.max_model_len):
            reason = "length"
        if reason is None and grammar is not None and grammar.is_finished:
            reason = "stop"  # nothing may follow
        token_logprobs = None if logprobs is None else [logprobs]
        if reason is None:
            text = detok.take_delta(finished=False) if detok is not None else ""
            return self._delta(request, [token_id], text, token_logprobs)
        request.finish(reason, stop_reason)
        return self._finish(request, [token_id], None, token_logprobs)

    def _finish(self, request: Request, new_token_ids: list[int], text: str | None,
                logprobs: list[TokenLogprobs] | None = None) -> RequestDelta:
        """Release a finished request; `text` None takes the detokenizer's last text (which may raise first)."""
        if text is None:
            text = request.detokenizer.take_delta(finished=True) if request.detokenizer is not None else ""
        self.scheduler.finish_request(request)
        self.runner.release(request)
        del self.requests[request.request_id]
        self.stats.num_finished_requests += 1
        if self.recorder is not None:
            try:
                self.recorder.on_finish(request)
            except Exception:  # noqa: BLE001 - the reply is complete; only its recording is lost
                logger.exception("the recorder failed at the end of request %r", request.request_id)
        return self._delta(request, new_token_ids, text, logprobs)

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
    def _delta(request: Request, new_token_ids: list[int], text: str,
               logprobs: list[TokenLogprobs] | None = None) -> RequestDelta:
        prompt_logprobs = None
        if new_token_ids and request.params.prompt_logprobs is not None and not request.prompt_logprobs_sent:
            # Once, with the first token: the first prompt token has nothing before it to predict it.
            prompt_logprobs = [None, *request.prompt_logprobs]
            request.prompt_logprobs_sent = True
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
            timing=RequestTiming.of(request) if request.is_finished else None,
            logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
        )
