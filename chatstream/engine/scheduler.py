"""The scheduler: which requests run in the next step, and with how many tokens each.

One rule covers prefill, chunked prefill, decode, prefix-cache hits and preemption: every request
has `num_computed_tokens` catching up with `num_tokens`, under one token budget per step.

Order of a step (FCFS):
1. Running requests first, oldest first: each asks for the tokens it still lacks (1 for a decode,
   the rest of a chunked prompt otherwise), capped by the remaining budget. When the KV blocks run
   out, the newest running request is preempted by recompute (its blocks are freed, it goes back
   to the front of the waiting queue and later resumes from its prompt + output so far, helped by
   whatever its blocks left in the prefix cache).
2. Then waiting requests, in arrival order, while budget, blocks and `max_num_seqs` allow; a
   prompt longer than the remaining budget is chunked. A waiting request that does not fit stops
   the admission (no overtaking), and nothing is admitted in a step that had to preempt.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from chatstream.engine.block_manager import BlockManager
from chatstream.engine.request import Request, RequestStatus


@dataclass
class ScheduledRequest:
    request: Request
    num_new_tokens: int

    @property
    def completes_sequence(self) -> bool:
        """True when this step computes the request's last token, so it yields logits to sample."""
        return self.request.num_computed_tokens + self.num_new_tokens == self.request.num_tokens


@dataclass
class SchedulerOutput:
    scheduled: list[ScheduledRequest] = field(default_factory=list)
    preempted: list[Request] = field(default_factory=list)

    @property
    def num_batched_tokens(self) -> int:
        return sum(s.num_new_tokens for s in self.scheduled)

    @property
    def is_empty(self) -> bool:
        return not self.scheduled


class Scheduler:
    """Continuous batching over the block manager's KV blocks."""

    def __init__(self, block_manager: BlockManager, max_num_seqs: int, max_num_batched_tokens: int) -> None:
        self.block_manager = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.num_preemptions = 0

    # -- bookkeeping ---------------------------------------------------------------------
    def add_request(self, request: Request) -> None:
        self.waiting.append(request)

    def has_unfinished_requests(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    def finish_request(self, request: Request) -> None:
        """Drop a finished or aborted request from the queues and free its blocks."""
        if request in self.running:
            self.running.remove(request)
        else:
            try:
                self.waiting.remove(request)
            except ValueError:
                pass
        self.block_manager.free(request)

    # -- the step ------------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.max_num_batched_tokens
        bm = self.block_manager

        scheduled_running: list[Request] = []
        i = 0
        while i < len(self.running) and budget > 0:
            request = self.running[i]
            num_new = min(request.num_tokens - request.num_computed_tokens, budget)
            while not bm.allocate_slots(request, num_new):
                victim = self.running.pop()
                self._preempt(victim)
                out.preempted.append(victim)
                if victim is request:
                    break
            else:
                out.scheduled.append(ScheduledRequest(request, num_new))
                scheduled_running.append(request)
                budget -= num_new
                i += 1
                continue
            break  # the request preempted itself: nothing after it is left running

        if not out.preempted:
            while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
                request = self.waiting[0]
                # Prompt log-probs need every prompt token's logits: such a request skips the cache.
                computed = [] if request.needs_prompt_logits else bm.get_computed_blocks(request)
                num_cached = len(computed) * bm.block_size
                num_new = min(request.num_tokens - num_cached, budget)
                if not bm.allocate_slots(request, num_new, computed):
                    break
                self.waiting.popleft()
                request.num_computed_tokens = num_cached
                if request.num_cached_tokens < 0:
                    # Only the first admission counts towards the hit rate; a resumed request's
                    # hits are its own recompute savings.
                    request.num_cached_tokens = num_cached
                    request.first_scheduled_time = time.monotonic()
                    bm.record_query(request.num_prompt_tokens, num_cached)
                request.status = RequestStatus.RUNNING
                self.running.append(request)
                out.scheduled.append(ScheduledRequest(request, num_new))
                budget -= num_new
        return out

    def _preempt(self, request: Request) -> None:
        self.block_manager.free(request)
        request.num_computed_tokens = 0
        request.status = RequestStatus.PREEMPTED
        request.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(request)

    def update_after_step(self, output: SchedulerOutput) -> None:
        """Advance each scheduled request's progress and publish its new full blocks."""
        for s in output.scheduled:
            s.request.num_computed_tokens += s.num_new_tokens
            self.block_manager.cache_full_blocks(s.request)
