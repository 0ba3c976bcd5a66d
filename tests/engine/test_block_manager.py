"""BlockManager: allocation asks before it commits, reference counts, prefix cache and LRU."""

from __future__ import annotations

from chatstream.engine.block_manager import BlockManager
from chatstream.engine.request import Request
from chatstream.engine.sampling_params import SamplingParams


def make_request(tokens: list[int], rid: str = "r") -> Request:
    return Request(rid, tokens, SamplingParams(max_tokens=4), max_tokens=4)


def compute_all(bm: BlockManager, req: Request) -> None:
    """Allocate and 'compute' the whole request, as one scheduler step would."""
    computed = bm.get_computed_blocks(req)
    assert bm.allocate_slots(req, req.num_tokens - len(computed) * bm.block_size, computed)
    req.num_computed_tokens = req.num_tokens
    bm.cache_full_blocks(req)


def test_allocate_and_free_restore_every_block() -> None:
    bm = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=False)
    req = make_request(list(range(10)))
    assert bm.allocate_slots(req, 10)
    assert len(req.block_ids) == 3 and bm.num_free_blocks == 5
    req.num_computed_tokens = 10
    assert bm.allocate_slots(req, 2)  # 12 tokens still fit in 3 blocks
    assert len(req.block_ids) == 3
    assert bm.allocate_slots(req, 3)  # 13..15 need a 4th block
    assert len(req.block_ids) == 4
    bm.free(req)
    assert bm.num_free_blocks == 8 and req.block_ids == []


def test_no_room_is_a_return_value_and_changes_nothing() -> None:
    bm = BlockManager(num_blocks=2, block_size=4)
    req = make_request(list(range(12)))
    assert not bm.allocate_slots(req, 12)
    assert req.block_ids == [] and bm.num_free_blocks == 2


def test_prefix_hit_shares_blocks_with_reference_counts() -> None:
    bm = BlockManager(num_blocks=16, block_size=4)
    a = make_request([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "a")
    compute_all(bm, a)
    b = make_request([1, 2, 3, 4, 5, 6, 7, 8, 99, 98, 97], "b")
    hits = bm.get_computed_blocks(b)
    assert hits == a.block_ids[:2]
    assert bm.allocate_slots(b, b.num_tokens - 8, hits)
    assert [bm.blocks[i].ref_count for i in hits] == [2, 2]
    bm.free(a)
    assert [bm.blocks[i].ref_count for i in hits] == [1, 1]
    bm.free(b)
    assert bm.num_free_blocks == 16


def test_freed_blocks_stay_reusable_until_evicted() -> None:
    bm = BlockManager(num_blocks=4, block_size=4)
    a = make_request(list(range(100, 109)), "a")  # 2 full blocks + 1 token
    compute_all(bm, a)
    bm.free(a)
    again = make_request(list(range(100, 109)) + [5], "again")
    assert len(bm.get_computed_blocks(again)) == 2

    # Filling the cache with other content evicts them (least recently freed first).
    other = make_request(list(range(200, 216)), "other")
    assert bm.allocate_slots(other, 16)
    assert bm.get_computed_blocks(again) == []
    bm.free(other)
    assert bm.num_free_blocks == 4


def test_whole_prompt_hit_still_leaves_the_last_token_to_compute() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    a = make_request(list(range(8)), "a")
    compute_all(bm, a)
    same = make_request(list(range(8)), "same")
    assert len(bm.get_computed_blocks(same)) == 1  # block 2 holds the last token


def test_hash_is_checked_against_tokens() -> None:
    bm = BlockManager(num_blocks=8, block_size=2)
    a = make_request([1, 2, 3], "a")
    compute_all(bm, a)
    block = bm.blocks[a.block_ids[0]]
    block.token_ids = (7, 7)  # as if another prefix had produced the same hash
    assert bm.get_computed_blocks(make_request([1, 2, 3], "b")) == []


def test_disabled_prefix_cache_never_hits() -> None:
    bm = BlockManager(num_blocks=8, block_size=2, enable_prefix_caching=False)
    a = make_request([1, 2, 3, 4, 5], "a")
    compute_all(bm, a)
    assert bm.get_computed_blocks(make_request([1, 2, 3, 4, 5], "b")) == []


def test_hit_rate_counts_tokens() -> None:
    bm = BlockManager(num_blocks=8, block_size=2)
    bm.record_query(10, 4)
    bm.record_query(10, 0)
    assert bm.stats.hit_rate == 0.2
