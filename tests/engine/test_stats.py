"""The stats snapshot: taken by the engine thread after each step, immutable, and read from the
event loop without touching the scheduler."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from tiny_models import build_tiny_model

from chatstream.engine.async_engine import AsyncEngine
from chatstream.engine.config import EngineConfig
from chatstream.engine.engine_core import EngineCore
from chatstream.engine.sampling_params import SamplingParams
from chatstream.engine.stats import EngineStats


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return build_tiny_model("llama")


def test_the_snapshot_says_what_the_engine_holds(model_and_tokenizer) -> None:
    model, tokenizer = model_and_tokenizer
    core = EngineCore(model, tokenizer, EngineConfig(num_kv_blocks=32, block_size=4, max_num_seqs=2))
    empty = EngineStats.of(core)
    assert (empty.num_running, empty.num_waiting, empty.num_used_kv_blocks, empty.kv_cache_usage) == (0, 0, 0, 0.0)
    assert (empty.num_kv_blocks, empty.block_size, empty.kv_cache_tokens) == (32, 4, 128)
    assert empty.max_model_len == core.max_model_len and empty.kv_cache_bytes == core.kv_cache.size_bytes > 0

    prompt = list(range(5, 15))  # 10 tokens: 3 blocks once the first token is sampled
    for i in range(3):
        core.add_request(str(i), prompt, SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))
    core.step()
    busy = EngineStats.of(core)
    assert (busy.num_running, busy.num_waiting) == (2, 1)  # max_num_seqs=2: the third waits
    assert busy.num_used_kv_blocks == 32 - core.block_manager.num_free_blocks > 0
    assert busy.kv_cache_usage == busy.num_used_kv_blocks / 32
    assert busy.num_prompt_tokens == 30 and busy.num_generation_tokens == 2
    assert busy.prefix_cache_queries == core.block_manager.stats.queries > 0
    assert busy.prefix_cache_hits == core.block_manager.stats.hits
    with pytest.raises(dataclasses.FrozenInstanceError):
        busy.num_running = 0  # type: ignore[misc]
    assert empty.num_running == 0  # a snapshot never changes after it was taken

    while core.has_unfinished_requests():
        core.step()
    done = EngineStats.of(core)
    assert (done.num_running, done.num_waiting, done.num_used_kv_blocks) == (0, 0, 0)
    assert done.num_generation_tokens == 12 and done.num_finished_requests == 3
    assert done.prefix_cache_hits == core.block_manager.stats.hits > busy.prefix_cache_hits  # the third found them


def test_the_engine_thread_publishes_a_snapshot_per_step(model_and_tokenizer) -> None:
    model, tokenizer = model_and_tokenizer
    engine = AsyncEngine(EngineCore(model, tokenizer, EngineConfig(num_kv_blocks=32, block_size=4)))
    try:
        assert engine.stats.num_generation_tokens == 0 and engine.max_model_len == engine.stats.max_model_len

        async def main() -> list[tuple[int, int]]:
            seen = []
            params = SamplingParams(temperature=0, max_tokens=5, ignore_eos=True)
            async for delta in engine.generate([5, 6, 7], params):
                # Published before the step's deltas: each delta's step is already counted.
                seen.append((delta.num_output_tokens, engine.stats.num_generation_tokens))
            return seen

        seen = asyncio.run(main())
        assert [n for n, _ in seen] == [1, 2, 3, 4, 5]
        assert all(total >= n for n, total in seen)
        final = engine.stats
        assert (final.num_running, final.num_waiting, final.num_used_kv_blocks) == (0, 0, 0)
        assert final.num_finished_requests == 1 and final.num_prompt_tokens == 3
    finally:
        engine.shutdown()
