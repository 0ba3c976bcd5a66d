"""The `vllm:` names of our metrics, for the dashboards and alerts people already have for vLLM.

Every metric is observed once, under its `chatstream:` name, in the `Metrics` object's own
registry. At scrape time `VllmNamesCollector` re-emits those families under the names vLLM uses
(its v1 names, plus the older ones that common dashboards still query, e.g.
`vllm:gpu_cache_usage_perc` beside `vllm:kv_cache_usage_perc`), with the same samples, labels
(`model_name`, `finished_reason`) and buckets. `ForwardCollector` re-emits them unchanged. Which of
the two a server exposes is `--metrics-names` (chatstream, vllm, or both).

What has no counterpart: `chatstream:admission_*` (our run slots) stays ours only. vLLM's
`iteration_tokens_total`, `request_params_*` and `cache_config_info` are not exported.
`vllm:num_requests_swapped` is always 0 (our engine recomputes a preempted request; it never swaps).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

METRIC_NAME_SETS = ("both", "chatstream", "vllm")
SOURCE_PREFIX = "chatstream:"

# Our family name (without the prefix) -> the vLLM family names that carry the same samples.
VLLM_NAMES: dict[str, tuple[str, ...]] = {
    "num_requests_running": ("vllm:num_requests_running",),
    "num_requests_waiting": ("vllm:num_requests_waiting",),
    "kv_cache_usage_perc": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "num_preemptions": ("vllm:num_preemptions",),
    "prefix_cache_queries": ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries"),
    "prefix_cache_hits": ("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits"),
    "prompt_tokens": ("vllm:prompt_tokens",),
    "generation_tokens": ("vllm:generation_tokens",),
    "request_success": ("vllm:request_success",),
    "time_to_first_token_seconds": ("vllm:time_to_first_token_seconds",),
    # vLLM's older name for the same per-token gaps; dashboards made for it still query it.
    "inter_token_latency_seconds": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    "e2e_request_latency_seconds": ("vllm:e2e_request_latency_seconds",),
    "request_queue_time_seconds": ("vllm:request_queue_time_seconds",),
    "request_prefill_time_seconds": ("vllm:request_prefill_time_seconds",),
    "request_decode_time_seconds": ("vllm:request_decode_time_seconds",),
    "request_inference_time_seconds": ("vllm:request_inference_time_seconds",),
    "request_time_per_output_token_seconds": ("vllm:request_time_per_output_token_seconds",),
    "request_prompt_tokens": ("vllm:request_prompt_tokens",),
    "request_generation_tokens": ("vllm:request_generation_tokens",),
}


def renamed(family: Metric, name: str) -> Metric:
    """`family` under `name`: each sample's name keeps its suffix (`_total`, `_bucket`, ...)."""
    copy = Metric(name, family.documentation, family.type)
    copy.samples = [sample._replace(name=name + sample.name[len(family.name):]) for sample in family.samples]
    return copy


class ForwardCollector(Collector):
    """Exposes another registry's families as they are."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        return iter(self._source.collect())


class VllmNamesCollector(Collector):
    """Exposes the families of `source` (named `chatstream:*`) under their vLLM names."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        model_names: set[str] = set()
        for family in self._source.collect():
            short = family.name.removeprefix(SOURCE_PREFIX)
            for sample in family.samples:
                if "model_name" in sample.labels:
                    model_names.add(sample.labels["model_name"])
            for name in VLLM_NAMES.get(short, ()):
                yield renamed(family, name)
        swapped = GaugeMetricFamily("vllm:num_requests_swapped", "Requests swapped to CPU memory (never: a "
                                    "preempted request is recomputed).", labels=["model_name"])
        for model_name in sorted(model_names):
            swapped.add_metric([model_name], 0)
        yield swapped
