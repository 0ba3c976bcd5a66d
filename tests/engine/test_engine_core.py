"""EngineCore on a tiny Llama: block accounting after any mix of endings, validation, seeds."""

from __future__ import annotations

import random

import pytest
from tiny_models import build_tiny_model

from chatstream.engine.config import EngineConfig
from chatstream.engine.engine_core import EngineCore
from chatstream.engine.outputs import RequestDelta
from chatstream.engine.sampling_params import SamplingParams


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return build_tiny_model("llama")


def make_core(model_and_tokenizer, **options) -> EngineCore:
    model, tokenizer = model_and_tokenizer
    options.setdefault("num_kv_blocks", 64)
    options.setdefault("block_size", 4)
    return EngineCore(model, tokenizer, EngineConfig(**options))


def prompts(n: int, seed: int = 0, vocab: int = 400) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, vocab) for _ in range(rng.randint(1, 40))] for _ in range(n)]


def drain(core: EngineCore) -> dict[str, list[RequestDelta]]:
    deltas: dict[str, list[RequestDelta]] = {}
    while core.has_unfinished_requests():
        for d in core.step():
            deltas.setdefault(d.request_id, []).append(d)
    return deltas


def test_every_block_is_free_after_finished_stopped_and_aborted_requests(model_and_tokenizer) -> None:
    core = make_core(model_and_tokenizer, num_kv_blocks=24)  # small enough to preempt too
    ps = prompts(12)
    for i, p in enumerate(ps):
        if i % 3 == 0:
            params = SamplingParams(temperature=0, max_tokens=20, ignore_eos=True)
        elif i % 3 == 1:
            params = SamplingParams(temperature=0.8, seed=i, max_tokens=30, stop_token_ids=list(range(3, 300)))
        else:
            params = SamplingParams(temperature=1.0, seed=i, max_tokens=50, ignore_eos=True)
        core.add_request(str(i), p, params)
    deltas: dict[str, list[RequestDelta]] = {}
    for _ in range(3):
        for d in core.step():
            deltas.setdefault(d.request_id, []).append(d)
    aborted = [core.abort_request(str(i)) for i in (2, 5, 8)]
    assert all(d is not None and d.finished and d.finish_reason == "abort" for d in aborted)
    for rid, ds in drain(core).items():
        deltas.setdefault(rid, []).extend(ds)
    reasons = {rid: ds[-1].finish_reason for rid, ds in deltas.items() if ds[-1].finished}
    assert reasons["0"] == "length"
    assert reasons["1"] == "stop"
    assert core.block_manager.num_free_blocks == core.block_manager.num_blocks
    assert not core.requests and not core.scheduler.running and not core.scheduler.waiting
    assert core.abort_request("0") is None  # finished requests are gone; aborting is harmless


def test_abort_of_a_waiting_request_frees_it(model_and_tokenizer) -> None:
    core = make_core(model_and_tokenizer, max_num_seqs=1)
    core.add_request("a", [5, 6, 7], SamplingParams(max_tokens=5))
    core.add_request("b", [5, 6, 8], SamplingParams(max_tokens=5))
    core.step()
    assert core.abort_request("b").finish_reason == "abort"
    drain(core)
    assert core.block_manager.num_free_blocks == core.block_manager.num_blocks


@pytest.mark.parametrize(
    ("prompt", "match"),
    [([], "at least one token"), ([1] * 500, "max_model_len"), ([10**7], "out of range")],
)
def test_bad_prompts_raise_value_error_and_the_engine_goes_on(model_and_tokenizer, prompt, match) -> None:
    core = make_core(model_and_tokenizer, max_model_len=128)
    with pytest.raises(ValueError, match=match):
        core.add_request("bad", prompt, SamplingParams())
    core.add_request("ok", [5, 6, 7], SamplingParams(max_tokens=3, ignore_eos=True))
    assert drain(core)["ok"][-1].num_output_tokens == 3


def test_duplicate_request_id_is_refused(model_and_tokenizer) -> None:
    core = make_core(model_and_tokenizer)
    core.add_request("x", [5, 6], SamplingParams(max_tokens=2))
    with pytest.raises(ValueError, match="already in use"):
        core.add_request("x", [5, 6], SamplingParams(max_tokens=2))


def test_max_tokens_none_runs_to_the_context_limit(model_and_tokenizer) -> None:
    core = make_core(model_and_tokenizer, max_model_len=24)
    core.add_request("a", list(range(5, 15)), SamplingParams(max_tokens=None, ignore_eos=True, temperature=0))
    last = drain(core)["a"][-1]
    assert last.finish_reason == "length" and last.num_output_tokens == 14


def test_min_tokens_blocks_eos_and_stop_ids(model_and_tokenizer) -> None:
    core = make_core(model_and_tokenizer)
    stop_ids = list(range(0, 400))  # most tokens stop the request ... once min_tokens is reached
    core.add_request("a", [5, 6, 7], SamplingParams(temperature=1.0, seed=1, min_tokens=6, stop_token_ids=stop_ids))
    deltas = drain(core)["a"]
    tokens = [t for d in deltas for t in d.new_token_ids]
    assert all(t >= 400 for t in tokens[:6])  # stop ids and EOS (id 0) were blocked
    assert deltas[-1].finish_reason == "stop" and len(tokens) >= 6


def run_seeded(model_and_tokenizer, order: list[int], with_others: bool) -> dict[int, list[int]]:
    core = make_core(model_and_tokenizer)
    ps = prompts(8, seed=3)
    for i in order:
        core.add_request(f"s{i}", ps[i], SamplingParams(temperature=1.0, top_p=0.9, seed=100 + i, max_tokens=16,
                                                        ignore_eos=True))
        if with_others:
            core.add_request(f"o{i}", ps[(i + 3) % 8], SamplingParams(temperature=1.3, max_tokens=9, ignore_eos=True))
    out = {i: [] for i in order}
    for rid, ds in drain(core).items():
        if rid.startswith("s"):
            out[int(rid[1:])] = [t for d in ds for t in d.new_token_ids]
    return out


def test_seeded_sampling_is_reproducible_whatever_else_is_in_the_batch(model_and_tokenizer) -> None:
    alone = {i: run_seeded(model_and_tokenizer, [i], with_others=False)[i] for i in (0, 4)}
    crowded = run_seeded(model_and_tokenizer, [4, 7, 0, 2], with_others=True)
    assert crowded[0] == alone[0]
    assert crowded[4] == alone[4]
    assert alone[0] != alone[4]


def test_text_and_deltas_agree(model_and_tokenizer) -> None:
    model, tokenizer = model_and_tokenizer
    core = make_core(model_and_tokenizer)
    ids = tokenizer("Hello world, this is a test")["input_ids"]
    core.add_request("t", ids, SamplingParams(temperature=0, max_tokens=20, ignore_eos=True))
    ds = drain(core)["t"]
    tokens = [t for d in ds for t in d.new_token_ids]
    # A final character cut off by max_tokens is dropped instead of being shown as U+FFFD.
    assert "".join(d.new_text for d in ds) == tokenizer.decode(tokens, skip_special_tokens=True).rstrip("\ufffd")
