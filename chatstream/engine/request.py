"""Per-request state inside the engine: token ids, progress, block table and finish status.

A request has no separate prefill and decode phases: `num_computed_tokens` catches up with
`num_tokens` under the scheduler's per-step budget. A decode is the case where exactly one token
(the last sampled one) is not computed yet; a preempted request simply restarts from zero (or from
whatever the prefix cache still holds).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chatstream.engine.outputs import FinishReason
from chatstream.engine.sampling_params import SamplingParams

if TYPE_CHECKING:
    from chatstream.engine.detokenizer import IncrementalDetokenizer
    from chatstream.engine.grammar_matcher import GrammarMatcher
    from chatstream.engine.logprobs import TokenLogprobs


class RequestStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    PREEMPTED = "preempted"
    FINISHED = "finished"


@dataclass(eq=False)
class Request:
    """One generation request as the scheduler, block manager and runner see it."""

    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    max_tokens: int
    eos_token_ids: frozenset[int] = frozenset()
    prompt: str | None = None
    detokenizer: "IncrementalDetokenizer | None" = None
    grammar: "GrammarMatcher | None" = None  # its structured output's state, when it has one
    arrival_time: float = field(default_factory=time.monotonic)

    all_token_ids: list[int] = field(init=False)
    status: RequestStatus = field(default=RequestStatus.WAITING, init=False)
    num_computed_tokens: int = field(default=0, init=False)
    block_ids: list[int] = field(default_factory=list, init=False)
    # Chained hashes of the request's full blocks, computed once and extended as tokens arrive.
    block_hashes: list[int] = field(default_factory=list, init=False)
    # -1 until first scheduled: how many prompt tokens the prefix cache supplied.
    num_cached_tokens: int = field(default=-1, init=False)
    num_preemptions: int = field(default=0, init=False)
    finish_reason: FinishReason | None = field(default=None, init=False)
    stop_reason: str | int | None = field(default=None, init=False)
    error: str | None = field(default=None, init=False)  # why it failed (finish reason "error")
    first_scheduled_time: float | None = field(default=None, init=False)  # time.monotonic(), first step it ran
    first_token_time: float | None = field(default=None, init=False)
    # Log-probs of prompt tokens 1.. as computed so far (only with params.prompt_logprobs); they go
    # out with the first delta.
    prompt_logprobs: list[TokenLogprobs] = field(default_factory=list, init=False)
    prompt_logprobs_sent: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.all_token_ids = list(self.prompt_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.all_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.all_token_ids) - len(self.prompt_token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.all_token_ids[len(self.prompt_token_ids):]

    @property
    def needs_prompt_logits(self) -> bool:
        """True while it asked for prompt log-probs and some are still missing (the prefix cache is
        skipped for it then: a cached block has no logits)."""
        return self.params.prompt_logprobs is not None and len(self.prompt_logprobs) < self.num_prompt_tokens - 1

    @property
    def is_finished(self) -> bool:
        return self.status is RequestStatus.FINISHED

    def append_output_token(self, token_id: int) -> None:
        if self.first_token_time is None:
            self.first_token_time = time.monotonic()
        self.all_token_ids.append(token_id)

    def finish(self, reason: FinishReason, stop_reason: str | int | None = None) -> None:
        self.status = RequestStatus.FINISHED
        self.finish_reason = reason
        self.stop_reason = stop_reason
