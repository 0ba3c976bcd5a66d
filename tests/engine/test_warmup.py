"""The warm-up request a server runs before serving, and the timing a finished request's last delta carries."""

from __future__ import annotations

import logging

import pytest
from tiny_models import build_tiny_model

from chatstream.engine.builder import build_engine_core
from chatstream.engine.sampling_params import SamplingParams


def test_warmup_runs_a_request_then_leaves_the_engine_as_new(caplog: pytest.LogCaptureFixture) -> None:
    model, tokenizer = build_tiny_model("llama")
    with caplog.at_level(logging.INFO, logger="chatstream.startup"):
        core = build_engine_core(model, tokenizer, {"num_kv_blocks": 16, "block_size": 4, "warmup": True})
    phases = [(r.phase, r.event) for r in caplog.records if hasattr(r, "phase")]
    assert ("prepare", "done") in phases and ("warmup", "start") in phases and ("warmup", "done") in phases
    assert phases.index(("prepare", "done")) < phases.index(("warmup", "start"))
    # Nothing of the warm-up is left: no request, every block free, every total zero.
    assert not core.has_unfinished_requests() and not core.requests
    assert core.block_manager.num_free_blocks == 16
    assert core.stats.num_prompt_tokens == core.stats.num_generation_tokens == core.stats.num_finished_requests == 0
    assert core.block_manager.stats.queries == core.block_manager.stats.hits == 0


def test_no_warmup_unless_asked(caplog: pytest.LogCaptureFixture) -> None:
    model, tokenizer = build_tiny_model("llama")
    with caplog.at_level(logging.INFO, logger="chatstream.startup"):
        build_engine_core(model, tokenizer, {"num_kv_blocks": 16, "block_size": 4})
    assert not [r for r in caplog.records if getattr(r, "phase", None) == "warmup"]


def test_the_last_delta_carries_the_requests_timing_in_order() -> None:
    model, tokenizer = build_tiny_model("llama")
    core = build_engine_core(model, tokenizer, {"num_kv_blocks": 16, "block_size": 4})
    core.add_request("r", [5, 6, 7, 8, 9], SamplingParams(max_tokens=3, temperature=0.0, ignore_eos=True))
    deltas = []
    while core.has_unfinished_requests():
        deltas += core.step()
    assert all(d.timing is None for d in deltas[:-1])
    timing = deltas[-1].timing
    assert timing is not None and deltas[-1].num_output_tokens == 3
    assert timing.arrival <= timing.first_scheduled <= timing.first_token <= timing.finished
    assert timing.prefill_seconds + timing.decode_seconds == pytest.approx(timing.inference_seconds)
    assert timing.queue_seconds == timing.first_scheduled - timing.arrival


def test_a_request_aborted_before_it_ran_has_no_prefill() -> None:
    model, tokenizer = build_tiny_model("llama")
    core = build_engine_core(model, tokenizer, {"num_kv_blocks": 16, "block_size": 4})
    core.add_request("r", [5, 6, 7], SamplingParams(max_tokens=3))
    timing = core.abort_request("r").timing
    assert timing.first_scheduled is None and timing.prefill_seconds is None and timing.inference_seconds is None
    assert timing.queue_seconds == timing.finished - timing.arrival
