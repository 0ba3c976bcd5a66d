"""AsyncEngine: streaming from the engine thread, cancellation, validation and a dying engine."""

from __future__ import annotations

import asyncio

import pytest
from tiny_models import build_tiny_model

from chatstream.engine.config import EngineConfig
from chatstream.engine.async_engine import AsyncEngine, EngineDeadError
from chatstream.engine.engine_core import EngineCore
from chatstream.engine.sampling_params import SamplingParams


@pytest.fixture
def engine():
    model, tokenizer = build_tiny_model("llama")
    eng = AsyncEngine(EngineCore(model, tokenizer, EngineConfig(num_kv_blocks=64, block_size=4)))
    yield eng
    eng.shutdown()


async def collect(eng: AsyncEngine, prompt: list[int], **params) -> list:
    return [d async for d in eng.generate(prompt, SamplingParams(**params))]


def test_concurrent_generations_stream_to_their_own_callers(engine: AsyncEngine) -> None:
    async def main():
        return await asyncio.gather(*(
            collect(engine, [5 + i, 6, 7], temperature=0, max_tokens=8 + i, ignore_eos=True) for i in range(6)
        ))

    results = asyncio.run(main())
    for i, deltas in enumerate(results):
        assert deltas[-1].finished and deltas[-1].finish_reason == "length"
        assert sum(len(d.new_token_ids) for d in deltas) == 8 + i
    assert engine.core.block_manager.num_free_blocks == engine.core.block_manager.num_blocks


def test_leaving_the_stream_early_aborts_and_frees_blocks(engine: AsyncEngine) -> None:
    async def main():
        gen = engine.generate([5, 6, 7], SamplingParams(max_tokens=10_000, ignore_eos=True, temperature=0))
        async for _delta in gen:
            break
        await gen.aclose()
        for _ in range(200):
            if not engine.core.requests:
                break
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert not engine.core.requests
    assert engine.core.block_manager.num_free_blocks == engine.core.block_manager.num_blocks


def test_cancelled_task_aborts_its_request(engine: AsyncEngine) -> None:
    async def main():
        streaming = asyncio.Event()

        async def consume() -> None:
            async for _delta in engine.generate([5, 6, 7], SamplingParams(max_tokens=10_000, ignore_eos=True)):
                streaming.set()

        task = asyncio.create_task(consume())
        # Cancelled while it streams, whatever the engine's speed (the reply could end at the context's end).
        await streaming.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(200):
            if not engine.core.requests:
                break
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert not engine.core.requests
    assert engine.core.block_manager.num_free_blocks == engine.core.block_manager.num_blocks


def test_bad_input_raises_in_the_caller_and_the_engine_lives_on(engine: AsyncEngine) -> None:
    async def main():
        with pytest.raises(ValueError, match="at least one token"):
            await collect(engine, [])
        with pytest.raises(ValueError, match="out of range"):
            await collect(engine, [10**9])
        return await collect(engine, [5, 6], max_tokens=3, ignore_eos=True)

    assert asyncio.run(main())[-1].num_output_tokens == 3
    assert engine.is_running


def test_a_dead_engine_fails_waiting_and_new_requests(engine: AsyncEngine, monkeypatch) -> None:
    def boom():
        raise RuntimeError("injected failure")

    async def main():
        monkeypatch.setattr(engine.core, "step", boom)
        with pytest.raises(EngineDeadError):
            await collect(engine, [5, 6, 7], max_tokens=5)
        with pytest.raises(EngineDeadError):
            await collect(engine, [5, 6, 7], max_tokens=5)

    asyncio.run(asyncio.wait_for(main(), 30))
    assert not engine.is_running
