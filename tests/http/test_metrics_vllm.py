"""The per-request histograms from a finished request's timing, and the `vllm:` names: the same
samples under the names vLLM dashboards query, chosen with `names=` (`--metrics-names`)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chatstream.engine.outputs import RequestDelta, RequestTiming
from chatstream.http.metrics import Metrics
from chatstream.http.metrics_vllm import VLLM_NAMES

MODEL = "tiny"


def scrape(metrics: Metrics) -> dict[str, float]:
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics.render()[0].decode()):
        for sample in family.samples:
            assert sample.labels.pop("model_name") == MODEL  # every sample names its model
            extra = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[sample.name + (f"{{{extra}}}" if extra else "")] = sample.value
    return samples


def finished(num_prompt: int, num_output: int, timing: RequestTiming | None) -> RequestDelta:
    return RequestDelta("r", [1], "x", finished=True, finish_reason="stop", num_prompt_tokens=num_prompt,
                        num_cached_tokens=0, num_output_tokens=num_output, timing=timing)


def observe_two_requests(metrics: Metrics) -> None:
    # Arrived at 10, ran from 10.5, first token at 11, ended at 13 after 5 tokens.
    metrics.on_first_token(1.0)
    metrics.on_finish(3.0, finished(40, 5, RequestTiming(10.0, 10.5, 11.0, 13.0)))
    # Only one token: no time per output token; no timing (an old engine): sizes only.
    metrics.on_finish(1.0, finished(7, 1, None))
    metrics.observe_queue_time(0.25)


def test_finished_requests_fill_the_size_and_phase_histograms() -> None:
    metrics = Metrics(MODEL, names="chatstream")
    observe_two_requests(metrics)
    s = scrape(metrics)
    p = "chatstream:"
    assert (s[p + "request_prompt_tokens_count"], s[p + "request_prompt_tokens_sum"]) == (2, 47)
    assert (s[p + "request_generation_tokens_count"], s[p + "request_generation_tokens_sum"]) == (2, 6)
    assert s[p + "request_prompt_tokens_bucket{le=50.0}"] == 2 and s[p + "request_prompt_tokens_bucket{le=20.0}"] == 1
    assert (s[p + "request_prefill_time_seconds_count"], s[p + "request_prefill_time_seconds_sum"]) == (1, 0.5)
    assert s[p + "request_decode_time_seconds_sum"] == 2.0
    assert s[p + "request_inference_time_seconds_sum"] == 2.5
    assert s[p + "request_time_per_output_token_seconds_count"] == 1
    assert s[p + "request_time_per_output_token_seconds_sum"] == pytest.approx(0.5)  # 2 s over 4 tokens
    assert s[p + "request_queue_time_seconds_sum"] == 0.25
    assert not any(name.startswith("vllm:") for name in s)


def test_an_early_leaver_counts_as_abort_with_no_sizes() -> None:
    metrics = Metrics(MODEL, names="chatstream")
    metrics.on_finish(0.5, None)
    s = scrape(metrics)
    assert s["chatstream:request_success_total{finished_reason=abort}"] == 1
    assert s["chatstream:request_prompt_tokens_count"] == 0


def test_vllm_names_carry_the_same_samples() -> None:
    both = Metrics(MODEL)  # the default: both sets
    observe_two_requests(both)
    s = scrape(both)
    for ours, theirs in VLLM_NAMES.items():
        mine = {k[len("chatstream:" + ours):]: v for k, v in s.items()
                if k.startswith("chatstream:" + ours) and not k.endswith("_created")}
        for name in theirs:
            copy = {k[len(name):]: v for k, v in s.items() if k.startswith(name) and not k.endswith("_created")}
            if mine:  # families with samples now (the engine's gauges have none before attach)
                assert {k: v for k, v in copy.items() if k in mine} == mine, name
    assert s["vllm:time_per_output_token_seconds_count"] == s["chatstream:inter_token_latency_seconds_count"]
    assert s["vllm:request_success_total{finished_reason=stop}"] == 2
    assert s["vllm:request_prefill_time_seconds_sum"] == 0.5


def test_vllm_names_alone() -> None:
    metrics = Metrics(MODEL, names="vllm")
    observe_two_requests(metrics)
    s = scrape(metrics)
    assert s["vllm:request_prompt_tokens_sum"] == 47
    assert not any(name.startswith("chatstream:") for name in s)


def test_engine_gauges_under_both_vllm_names_and_swapped_is_zero() -> None:
    from types import SimpleNamespace

    from chatstream.engine.stats import EngineStats

    metrics = Metrics(MODEL, names="vllm")
    stats = EngineStats(num_running=1, num_kv_blocks=4, num_free_kv_blocks=1, prefix_cache_queries=32,
                        prefix_cache_hits=16)
    admission = SimpleNamespace(num_running=1, num_waiting=0, max_running=1, max_waiting=0)
    metrics.attach(SimpleNamespace(stats=stats, observer=None), admission)
    s = scrape(metrics)
    assert s["vllm:kv_cache_usage_perc"] == s["vllm:gpu_cache_usage_perc"] == 0.75
    assert s["vllm:gpu_prefix_cache_hits_total"] == s["vllm:prefix_cache_hits_total"] == 16
    assert s["vllm:num_requests_running"] == 1 and s["vllm:num_requests_swapped"] == 0


def test_unknown_name_set_is_refused() -> None:
    with pytest.raises(ValueError, match="names must be one of"):
        Metrics(MODEL, names="prometheus")
