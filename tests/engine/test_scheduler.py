"""Scheduler over a real BlockManager, with no model: budget, chunking, FCFS and preemption."""

from __future__ import annotations

from chatstream.engine.block_manager import BlockManager
from chatstream.engine.request import Request, RequestStatus
from chatstream.engine.scheduler import Scheduler, SchedulerOutput
from chatstream.engine.sampling_params import SamplingParams


def make_scheduler(num_blocks: int = 64, block_size: int = 4, max_num_seqs: int = 8, budget: int = 32) -> Scheduler:
    return Scheduler(BlockManager(num_blocks, block_size), max_num_seqs, budget)


def add(s: Scheduler, rid: str, n: int) -> Request:
    req = Request(rid, list(range(1000 + 100 * int(rid), 1000 + 100 * int(rid) + n)), SamplingParams(), max_tokens=100)
    s.add_request(req)
    return req


def run_step(s: Scheduler, next_token: int = 7) -> SchedulerOutput:
    """One step as the engine runs it: schedule, advance, append a token where logits come out."""
    out = s.schedule()
    done = [x.request for x in out.scheduled if x.completes_sequence]
    s.update_after_step(out)
    for req in done:
        req.append_output_token(next_token)
    return out


def test_prefill_is_chunked_under_the_token_budget() -> None:
    s = make_scheduler(budget=16)
    add(s, "1", 40)
    sizes = [run_step(s).scheduled[0].num_new_tokens for _ in range(4)]
    assert sizes == [16, 16, 8, 1]


def test_decodes_go_first_then_prefills_fill_the_budget() -> None:
    s = make_scheduler(budget=10)
    a = add(s, "1", 4)
    run_step(s)  # a's prefill
    b = add(s, "2", 30)
    out = run_step(s)
    assert [(x.request, x.num_new_tokens) for x in out.scheduled] == [(a, 1), (b, 9)]


def test_fcfs_and_max_num_seqs() -> None:
    s = make_scheduler(max_num_seqs=2, budget=100)
    reqs = [add(s, str(i), 5) for i in range(1, 4)]
    out = run_step(s)
    assert [x.request for x in out.scheduled] == reqs[:2]
    assert list(s.waiting) == [reqs[2]]


def test_newest_is_preempted_by_recompute_and_resumes_first() -> None:
    # 4 blocks of 4 tokens: two requests of 7 tokens fill 2 blocks each; the first decode that
    # needs a new block forces the newest request out.
    s = make_scheduler(num_blocks=4, budget=64)
    a = add(s, "1", 7)
    b = add(s, "2", 7)
    run_step(s)  # both prefilled; each now has 8 tokens (one sampled), 2 blocks each
    out = run_step(s)  # a's decode fits in its 2nd block (8 tokens); so does b's
    assert not out.preempted
    out = run_step(s)  # now each needs a 3rd block: b (newest) is preempted
    assert out.preempted == [b]
    assert b.status is RequestStatus.PREEMPTED and b.num_computed_tokens == 0 and b.block_ids == []
    assert s.waiting[0] is b
    assert [x.request for x in out.scheduled] == [a]
    # When a finishes, b comes back with its prompt and output so far.
    s.finish_request(a)
    out = run_step(s)
    assert out.scheduled[0].request is b
    assert b.num_computed_tokens > 0
    s.finish_request(b)
    assert s.block_manager.num_free_blocks == 4


def test_request_that_fits_nowhere_waits_without_overtaking() -> None:
    s = make_scheduler(num_blocks=3, budget=64)
    big = add(s, "1", 20)  # needs 5 blocks
    small = add(s, "2", 2)
    out = s.schedule()
    assert out.is_empty and list(s.waiting) == [big, small]
