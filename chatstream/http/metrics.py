"""Prometheus metrics for one served model: what `/metrics` exposes.

`Metrics` owns its own `CollectorRegistry` (never the process-wide one), so several apps and
tests can live in one process without "duplicated timeseries" errors. Names follow vLLM's with a
`chatstream:` prefix and a `model_name` label on every sample; `names="vllm"` or `"both"` (the
server's default) also or only exposes them under the `vllm:` names that dashboards made for vLLM
query (`metrics_vllm.py`: the same samples, renamed at scrape time, never observed twice). Two
kinds of metric live here:

- Engine and admission state, read at scrape time by a custom collector. Nothing has to push
  these, so no thread or timer exists for them. The engine's numbers come from its `stats`, the
  immutable snapshot its thread publishes after every step, so a scrape reads one consistent
  moment of the engine and never touches the scheduler (a scrape one step stale is fine).
- Per-request latencies and sizes, observed through the engine's `RequestObserver` hooks on the
  event loop (`attach` installs this object as `engine.observer`): time to first token, the gaps
  between tokens, the whole request; and from the engine's timing of each finished request
  (`RequestTiming`) its prefill, decode and inference time, its time per output token, and its
  prompt and generation token counts. The time a request waited for a run slot is reported by the
  serving code through `observe_queue_time`.

Finished requests are counted in one place only: `on_finish`, from the engine's final delta
(`finished_reason` stop / length / abort; a consumer that left early, or an engine that died
under it, counts as abort). There is deliberately no second counting entry point.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chatstream.engine.outputs import RequestDelta
from chatstream.http.metrics_vllm import METRIC_NAME_SETS, ForwardCollector, VllmNamesCollector

if TYPE_CHECKING:
    from chatstream.engine.engine_client import EngineClient
    from chatstream.facade.admission import Admission

PREFIX = "chatstream:"

# Buckets span a small model on a GPU (milliseconds) to a large one on a CPU (minutes).
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
INTER_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)
# Token counts per request, 1-2-5 steps up to the longest contexts served today.
TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000)


class _EngineCollector(Collector):
    """Reads the engine's and the admission's counters when Prometheus scrapes."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterator[Metric]:
        # Names only, so registering never touches an engine that may not exist yet.
        return iter(self._families().values())

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        metrics = self._metrics
        if not metrics.attached:  # still loading: the families are announced but have no samples
            return iter(families.values())
        label = [metrics.model_name]
        admission = metrics.admission
        if admission is not None:
            families["admission_running"].add_metric(label, admission.num_running)
            families["admission_waiting"].add_metric(label, admission.num_waiting)
            families["admission_capacity"].add_metric(label, admission.max_running + admission.max_waiting)
        if metrics.engine is not None:  # the mock generator has no engine
            stats = metrics.engine.stats
            queued = admission.num_waiting if admission is not None else 0
            families["num_requests_running"].add_metric(label, stats.num_running)
            # Waiting for a run slot and waiting inside the engine are both "not yet generating".
            families["num_requests_waiting"].add_metric(label, stats.num_waiting + queued)
            families["kv_cache_usage_perc"].add_metric(label, stats.kv_cache_usage)
            families["num_preemptions"].add_metric(label, stats.num_preemptions)
            families["prefix_cache_queries"].add_metric(label, stats.prefix_cache_queries)
            families["prefix_cache_hits"].add_metric(label, stats.prefix_cache_hits)
            families["prompt_tokens"].add_metric(label, stats.num_prompt_tokens)
            families["generation_tokens"].add_metric(label, stats.num_generation_tokens)
        return iter(families.values())

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
        labels = ["model_name"]

        def gauge(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(PREFIX + name, doc, labels=labels)

        def counter(name: str, doc: str) -> CounterMetricFamily:
            # prometheus_client appends the `_total` suffix to counter samples itself.
            return CounterMetricFamily(PREFIX + name, doc, labels=labels)

        return {
            "num_requests_running": gauge("num_requests_running", "Requests in the engine's running batch."),
            "num_requests_waiting": gauge(
                "num_requests_waiting", "Requests waiting: in the engine's queue plus in line for a run slot."),
            "kv_cache_usage_perc": gauge("kv_cache_usage_perc", "Fraction of KV cache blocks in use (0..1)."),
            "num_preemptions": counter("num_preemptions", "Requests preempted (their blocks freed for recompute)."),
            "prefix_cache_queries": counter("prefix_cache_queries", "Prompt tokens looked up in the prefix cache."),
            "prefix_cache_hits": counter("prefix_cache_hits", "Prompt tokens found in the prefix cache."),
            "prompt_tokens": counter("prompt_tokens", "Prompt tokens of the requests the engine accepted."),
            "generation_tokens": counter("generation_tokens", "Tokens generated by the engine."),
            "admission_running": gauge("admission_running", "Generations holding a run slot."),
            "admission_waiting": gauge("admission_waiting", "Generations in line for a run slot."),
            "admission_capacity": gauge(
                "admission_capacity", "Run slots plus waiting places; requests beyond it get 429."),
        }


class Metrics:
    """The metrics of one model, in a registry of their own; also the engine's `RequestObserver`.

    `names`: which names `render` exposes: "chatstream", "vllm" or "both"."""

    def __init__(self, model_name: str, names: str = "both") -> None:
        if names not in METRIC_NAME_SETS:
            raise ValueError(f"names must be one of {METRIC_NAME_SETS}, got {names!r}")
        self.model_name = model_name
        self.attached = False
        self.engine: EngineClient | None = None
        self.admission: Admission | None = None
        # Observed into `own`; `registry` is what /metrics renders: `own` as is and/or renamed.
        self.own = CollectorRegistry()
        self.own.register(_EngineCollector(self))
        self.registry = CollectorRegistry()
        if names in ("chatstream", "both"):
            self.registry.register(ForwardCollector(self.own))
        if names in ("vllm", "both"):
            self.registry.register(VllmNamesCollector(self.own))
        labels = ["model_name"]

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(PREFIX + name, doc, labels, registry=self.own, buckets=buckets)

        # Children are bound to the label once; observing is then a plain method call.
        self._ttft = histogram("time_to_first_token_seconds", "Time to the first generated token, from "
                               "the request reaching the engine.", TTFT_BUCKETS).labels(model_name)
        self._inter_token = histogram("inter_token_latency_seconds", "Time between generated tokens, "
                                      "one observation per token.", INTER_TOKEN_BUCKETS).labels(model_name)
        self._e2e = histogram("e2e_request_latency_seconds", "Time from a request reaching the engine to "
                              "its end, aborted ones included.", REQUEST_BUCKETS).labels(model_name)
        self._queue = histogram("request_queue_time_seconds", "Time a request waited for a run slot.",
                                REQUEST_BUCKETS).labels(model_name)
        self._prefill = histogram("request_prefill_time_seconds", "Time from a request's first step to its "
                                  "first token (computing the prompt).", REQUEST_BUCKETS).labels(model_name)
        self._decode = histogram("request_decode_time_seconds", "Time from a request's first token to its "
                                 "end.", REQUEST_BUCKETS).labels(model_name)
        self._inference = histogram("request_inference_time_seconds", "Time from a request's first step to "
                                    "its end (prefill plus decode).", REQUEST_BUCKETS).labels(model_name)
        self._tpot = histogram("request_time_per_output_token_seconds", "A request's decode time over its "
                               "tokens after the first.", INTER_TOKEN_BUCKETS).labels(model_name)
        self._prompt_tokens = histogram("request_prompt_tokens", "Prompt tokens of each finished request.",
                                        TOKEN_BUCKETS).labels(model_name)
        self._generation_tokens = histogram("request_generation_tokens", "Tokens generated for each "
                                            "finished request.", TOKEN_BUCKETS).labels(model_name)
        self._success = Counter(PREFIX + "request_success", "Requests that ended, by finish reason.",
                                ["model_name", "finished_reason"], registry=self.own)

    def attach(self, engine: EngineClient | None, admission: Admission | None) -> None:
        """Read `engine`'s stats and `admission` at scrape time and observe the engine's requests
        (`engine` None: a mock ChatStream, which has none)."""
        self.engine, self.admission, self.attached = engine, admission, True
        if engine is not None:
            engine.observer = self

    # -- RequestObserver ---------------------------------------------------------------------
    def on_first_token(self, seconds: float) -> None:
        self._ttft.observe(seconds)

    def on_tokens(self, seconds: float, num_tokens: int) -> None:
        # A delta can carry several tokens if the consumer fell behind; the gap is shared out
        # evenly so every token counts once, as in vLLM, and the histogram's _sum stays the
        # real decode time.
        if num_tokens <= 0:
            return
        gap = seconds / num_tokens
        for _ in range(num_tokens):
            self._inter_token.observe(gap)

    def on_finish(self, seconds: float, delta: RequestDelta | None) -> None:
        self._e2e.observe(seconds)
        reason = delta.finish_reason if delta is not None and delta.finished else None
        self._success.labels(self.model_name, reason or "abort").inc()
        if delta is not None and delta.finished:
            self._observe_request(delta)

    def _observe_request(self, delta: RequestDelta) -> None:
        """The sizes and phases of one finished request (its final delta carries the engine's timing)."""
        self._prompt_tokens.observe(delta.num_prompt_tokens)
        self._generation_tokens.observe(delta.num_output_tokens)
        timing = delta.timing
        if timing is None:
            return
        for histogram, seconds in ((self._prefill, timing.prefill_seconds), (self._decode, timing.decode_seconds),
                                   (self._inference, timing.inference_seconds)):
            if seconds is not None:
                histogram.observe(seconds)
        if timing.decode_seconds is not None and delta.num_output_tokens > 1:
            self._tpot.observe(timing.decode_seconds / (delta.num_output_tokens - 1))

    # -- serving code ------------------------------------------------------------------------
    def observe_queue_time(self, seconds: float) -> None:
        self._queue.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every metric: (body, content type)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
