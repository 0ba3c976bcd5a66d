"""Output records the engine hands to its callers: per-step deltas and finished results."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from chatstream.engine.request import Request
    from chatstream.engine.logprobs import TokenLogprobs

# "error": the request failed in the engine (its `error` says why); the engine and the other
# requests went on.
FinishReason = Literal["stop", "length", "abort", "error"]


@dataclass(frozen=True)
class RequestTiming:
    """When a finished request passed each point, on the `time.monotonic()` clock of the engine.

    arrival: it was added to the engine. first_scheduled: it first ran in a step (None when it
    ended before that, e.g. aborted while waiting). first_token: its first token was sampled
    (None: no token). finished: it ended.
    """

    arrival: float
    first_scheduled: float | None
    first_token: float | None
    finished: float

    @classmethod
    def of(cls, request: Request) -> RequestTiming:
        return cls(request.arrival_time, request.first_scheduled_time, request.first_token_time, time.monotonic())

    @property
    def queue_seconds(self) -> float:
        """Waiting in the engine's queue: arrival to first scheduled (or to the end)."""
        return (self.first_scheduled if self.first_scheduled is not None else self.finished) - self.arrival

    @property
    def prefill_seconds(self) -> float | None:
        """First scheduled to first token: computing the prompt."""
        if self.first_scheduled is None or self.first_token is None:
            return None
        return self.first_token - self.first_scheduled

    @property
    def decode_seconds(self) -> float | None:
        """First token to the end: generating the rest."""
        return None if self.first_token is None else self.finished - self.first_token

    @property
    def inference_seconds(self) -> float | None:
        """First scheduled to the end: prefill plus decode."""
        return None if self.first_scheduled is None else self.finished - self.first_scheduled


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
    timing: RequestTiming | None = None  # on the final delta only
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
