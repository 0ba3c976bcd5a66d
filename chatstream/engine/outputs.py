"""Output records the engine hands to its callers: per-step deltas and finished results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from chatstream.engine.logprobs import TokenLogprobs

# "error": the request failed in the engine (its `error` says why); the engine and the other
# requests went on.
FinishReason = Literal["stop", "length", "abort", "error"]


@dataclass
class RequestDelta:
    """What one engine step produced for one request.

    `new_text` is only the text that became safe to show in this step (see the detokenizer's
    hold-back rules), so concatenating the deltas of a request gives its full output text.
    `logprobs` (with `SamplingParams.logprobs`) has one entry per token of `new_token_ids`;
    `prompt_logprobs` (with `SamplingParams.prompt_logprobs`) comes once, in the first delta that
    carries a token: one entry per prompt token, None for the first (nothing predicts it).
    """

    request_id: str
    new_token_ids: list[int]
    new_text: str
    finished: bool
    finish_reason: FinishReason | None
    num_prompt_tokens: int
    num_cached_tokens: int
    num_output_tokens: int
    stop_reason: str | int | None = None
    error: str | None = None  # why the request failed, with finish_reason "error"
    logprobs: list[TokenLogprobs] | None = None
    prompt_logprobs: list[TokenLogprobs | None] | None = None


@dataclass
class CompletionOutput:
    """One generated sequence of a request (the engine generates exactly one per request)."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: FinishReason | None
    stop_reason: str | int | None = None
    logprobs: list[TokenLogprobs] | None = None  # one per token, with SamplingParams.logprobs


@dataclass
class RequestOutput:
    """The result of a whole request, as `LLM.generate` returns it."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)
    finished: bool = False
    num_cached_tokens: int = 0
    prompt_logprobs: list[TokenLogprobs | None] | None = None  # with SamplingParams.prompt_logprobs
