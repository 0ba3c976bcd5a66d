"""A failure is confined to the request that caused it; the engine dies only when the model itself fails.

Each test runs some healthy requests beside one that fails in its own part of a step (its sampling, its
detokenization, the recorder's view of it, its setup) and checks: the failing request ends with finish reason
"error" and a message, the others produce exactly the tokens they produce alone, every KV block is free, and
the engine serves the next request.
"""

from __future__ import annotations

import asyncio

import pytest
from tiny_models import build_tiny_model

from chatstream.engine.config import EngineConfig
from chatstream.engine.async_engine import AsyncEngine, EngineDeadError, RequestFailedError
from chatstream.engine.detokenizer import IncrementalDetokenizer
from chatstream.engine.engine_core import EngineCore
from chatstream.engine.outputs import RequestDelta
from chatstream.engine.sampling_params import SamplingParams

HEALTHY = {"a": [5, 6, 7, 8], "b": [9, 10], "c": [11, 12, 13, 14, 15, 16, 17, 18, 19]}
GREEDY = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return build_tiny_model("llama")


def make_core(model_and_tokenizer) -> EngineCore:
    model, tokenizer = model_and_tokenizer
    return EngineCore(model, tokenizer, EngineConfig(num_kv_blocks=64, block_size=4))


def drain(core: EngineCore) -> dict[str, list[RequestDelta]]:
    deltas: dict[str, list[RequestDelta]] = {}
    while core.has_unfinished_requests():
        for d in core.step():
            deltas.setdefault(d.request_id, []).append(d)
    return deltas


def tokens(deltas: list[RequestDelta]) -> list[int]:
    return [t for d in deltas for t in d.new_token_ids]


@pytest.fixture(scope="module")
def alone(model_and_tokenizer) -> dict[str, list[int]]:
    """Each healthy request's greedy tokens when it runs by itself."""
    out = {}
    for rid, prompt in HEALTHY.items():
        core = make_core(model_and_tokenizer)
        core.add_request(rid, prompt, GREEDY)
        out[rid] = tokens(drain(core)[rid])
    return out


def run_beside_healthy(core: EngineCore, bad_id: str, bad_prompt: list[int], bad_params: SamplingParams,
                       alone: dict[str, list[int]]) -> RequestDelta:
    core.add_request("a", HEALTHY["a"], GREEDY)
    core.add_request(bad_id, bad_prompt, bad_params)
    core.add_request("b", HEALTHY["b"], GREEDY)
    core.add_request("c", HEALTHY["c"], GREEDY)
    deltas = drain(core)
    for rid in HEALTHY:
        assert deltas[rid][-1].finish_reason == "length", rid
        assert tokens(deltas[rid]) == alone[rid], rid
    assert core.block_manager.num_free_blocks == core.block_manager.num_blocks
    assert not core.requests
    # The engine goes on serving.
    core.add_request("next", HEALTHY["a"], GREEDY)
    assert tokens(drain(core)["next"]) == alone["a"]
    return deltas[bad_id][-1]


def test_a_request_whose_every_token_is_blocked_fails_alone(model_and_tokenizer, alone) -> None:
    core = make_core(model_and_tokenizer)
    vocab = core.vocab_size
    # Before min_tokens, stop ids and EOS are blocked: with every id a stop id, nothing can be sampled.
    params = SamplingParams(min_tokens=3, stop_token_ids=list(range(vocab)), max_tokens=5)
    last = run_beside_healthy(core, "bad", [5, 6], params, alone)
    assert last.finished and last.finish_reason == "error" and "no token has a finite logit" in last.error


def test_a_sampler_failure_in_one_row_fails_only_that_request(model_and_tokenizer, alone, monkeypatch) -> None:
    core = make_core(model_and_tokenizer)
    sampler = core.sampler

    def fragile(logits, rows):  # a bug that only one request's settings reach
        if any(row.params.seed == 666 for row in rows):
            raise IndexError("injected sampler bug")
        return sampler(logits, rows)

    monkeypatch.setattr(core, "sampler", fragile)
    last = run_beside_healthy(core, "bad", [5, 6, 7], SamplingParams(seed=666, max_tokens=8), alone)
    assert last.finish_reason == "error" and "IndexError: injected sampler bug" in last.error


def test_a_detokenizer_failure_fails_only_that_request(model_and_tokenizer, alone, monkeypatch) -> None:
    core = make_core(model_and_tokenizer)
    init, update = IncrementalDetokenizer.__init__, IncrementalDetokenizer.update

    def marking(self, tokenizer, prompt_token_ids, params):
        init(self, tokenizer, prompt_token_ids, params)
        self.fails_in_test = "BOOM" in params.stop

    def fragile(self, token_ids):
        if self.fails_in_test:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "injected")
        return update(self, token_ids)

    monkeypatch.setattr(IncrementalDetokenizer, "__init__", marking)
    monkeypatch.setattr(IncrementalDetokenizer, "update", fragile)
    last = run_beside_healthy(core, "bad", [5, 6, 7], SamplingParams(stop=["BOOM"], max_tokens=8), alone)
    assert last.finish_reason == "error" and "UnicodeDecodeError" in last.error


class FragileRecorder:
    """Records nothing; fails for requests whose prompt starts with a marker token, at one of its hooks."""

    def __init__(self, marker: int, hook: str) -> None:
        self.marker, self.hook = marker, hook
        self.finished: list[str] = []

    def _check(self, hook: str, requests) -> None:
        if hook == self.hook and any(r.prompt_token_ids[0] == self.marker for r in requests):
            raise OSError(f"injected {hook} failure")

    def on_add(self, request) -> None:
        self._check("on_add", [request])

    def on_step(self, requests, logits, token_ids) -> None:
        assert logits.shape[0] == len(requests) == len(token_ids)
        self._check("on_step", requests)

    def on_finish(self, request) -> None:
        self.finished.append(request.request_id)
        self._check("on_finish", [request])


def test_a_recorder_failure_on_a_step_fails_only_that_request(model_and_tokenizer, alone) -> None:
    core = make_core(model_and_tokenizer)
    core.recorder = FragileRecorder(marker=400, hook="on_step")
    last = run_beside_healthy(core, "bad", [400, 6], SamplingParams(max_tokens=8), alone)
    assert last.finish_reason == "error" and "recording failed: OSError" in last.error
    assert "bad" in core.recorder.finished  # its end was still reported


def test_a_recorder_failure_at_the_end_loses_only_the_recording(model_and_tokenizer, alone) -> None:
    core = make_core(model_and_tokenizer)
    core.recorder = FragileRecorder(marker=400, hook="on_finish")
    last = run_beside_healthy(core, "bad", [400, 6], SamplingParams(max_tokens=8, ignore_eos=True), alone)
    assert last.finish_reason == "length"  # the reply was complete


def test_a_recorder_failure_on_arrival_refuses_the_request_and_queues_nothing(model_and_tokenizer) -> None:
    core = make_core(model_and_tokenizer)
    core.recorder = FragileRecorder(marker=400, hook="on_add")
    with pytest.raises(OSError, match="injected on_add"):
        core.add_request("bad", [400, 6], SamplingParams(max_tokens=8))
    assert not core.requests and not core.has_unfinished_requests()


def test_values_that_slip_past_validation_cannot_break_a_step(model_and_tokenizer, alone) -> None:
    core = make_core(model_and_tokenizer)
    params = SamplingParams(max_tokens=4, ignore_eos=True)
    params.top_p = 1e-300  # what the validators used to let through: 0 in float32
    params.repetition_penalty = 1e-300  # logit / 0
    last = run_beside_healthy(core, "bad", [5, 6, 7], params, alone)
    assert last.finish_reason == "length" and last.num_output_tokens == 4


# -- AsyncEngine ------------------------------------------------------------------------------------------------------
@pytest.fixture
def engine(model_and_tokenizer):
    eng = AsyncEngine(make_core(model_and_tokenizer))
    yield eng
    eng.shutdown()


async def collect(eng: AsyncEngine, prompt: list[int], params: SamplingParams) -> list[int]:
    return [t async for d in eng.generate(prompt, params) for t in d.new_token_ids]


def test_async_engine_raises_in_the_failing_request_only(engine, alone, monkeypatch) -> None:
    sampler = engine.core.sampler

    def fragile(logits, rows):
        if any(row.params.seed == 666 for row in rows):
            raise IndexError("injected sampler bug")
        return sampler(logits, rows)

    monkeypatch.setattr(engine.core, "sampler", fragile)

    async def main():
        healthy = [collect(engine, prompt, GREEDY) for prompt in HEALTHY.values()]
        results = await asyncio.gather(*healthy, collect(engine, [5, 6], SamplingParams(seed=666)),
                                       return_exceptions=True)
        return results[:-1], results[-1]

    results, failure = asyncio.run(asyncio.wait_for(main(), 60))
    assert results == list(alone.values())
    assert isinstance(failure, RequestFailedError) and "injected sampler bug" in str(failure)
    assert engine.is_running and engine.dead_reason is None
    assert asyncio.run(collect(engine, HEALTHY["b"], GREEDY)) == alone["b"]


def test_async_engine_refuses_only_a_request_that_cannot_be_set_up(engine, monkeypatch) -> None:
    engine.core.recorder = FragileRecorder(marker=400, hook="on_add")

    async def main():
        with pytest.raises(RequestFailedError, match="injected on_add"):
            await collect(engine, [400, 6], SamplingParams(max_tokens=3))
        return await collect(engine, [5, 6], SamplingParams(max_tokens=3, ignore_eos=True))

    assert len(asyncio.run(asyncio.wait_for(main(), 60))) == 3
    assert engine.is_running


def test_a_failing_forward_pass_kills_the_engine_and_keeps_the_reason(engine, monkeypatch) -> None:
    def broken(output):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(engine.core.runner, "execute", broken)

    async def main():
        with pytest.raises(EngineDeadError):
            await collect(engine, [5, 6, 7], SamplingParams(max_tokens=5))
        with pytest.raises(EngineDeadError):
            await collect(engine, [5, 6, 7], SamplingParams(max_tokens=5))

    asyncio.run(asyncio.wait_for(main(), 30))
    assert not engine.is_running
    assert engine.dead_reason == "RuntimeError: CUDA error: an illegal memory access was encountered"


def test_dead_reason_after_shutdown(model_and_tokenizer) -> None:
    eng = AsyncEngine(make_core(model_and_tokenizer))
    assert eng.dead_reason is None
    eng.shutdown()
    assert eng.dead_reason == "the engine was shut down"


def test_llm_generate_returns_a_failed_request_with_finish_reason_error(model_and_tokenizer, alone) -> None:
    from chatstream import LLM

    model, tokenizer = model_and_tokenizer
    llm = LLM(model, tokenizer, num_kv_blocks=64, block_size=4)
    blocked = SamplingParams(min_tokens=3, stop_token_ids=list(range(llm.engine.vocab_size)), max_tokens=5)
    outs = llm.generate([HEALTHY["a"], [5, 6], HEALTHY["b"]], [GREEDY, blocked, GREEDY])
    assert [o.outputs[0].finish_reason for o in outs] == ["length", "error", "length"]
    assert outs[0].outputs[0].token_ids == alone["a"] and outs[2].outputs[0].token_ids == alone["b"]
