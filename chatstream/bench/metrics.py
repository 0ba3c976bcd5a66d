"""Per-request timings -> the benchmark's numbers, plus the process's peak memory.

Owns the definitions, so every contender is scored the same way:
  output tokens/s = all output tokens / time from t0 (every request arrives at t0) until the last token.
  TTFT            = time from t0 to a request's first output token; mean and p99 over requests.
  ITL             = gaps between consecutive output tokens of one request, pooled over all requests, then
                    averaged (as vLLM's benchmarks do), so long requests weigh by their token count.
  peak RSS        = the worker's own `ru_maxrss`, plus that of its largest reaped child for contenders that
                    run the model in child processes (vLLM).
Percentiles interpolate linearly between order statistics (numpy's default), so p99 of few requests is not
simply the maximum. Standard library only.
"""

from __future__ import annotations

import math
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from chatstream.bench.protocol import RequestTiming


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation; ValueError on no values."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, or None where either is missing or the baseline is zero."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


@dataclass
class Metrics:
    num_requests: int
    output_tokens: int
    duration_s: float
    output_tokens_per_s: float
    ttft_mean_s: float | None  # None: the contender could not report per-token times
    ttft_p99_s: float | None
    itl_mean_s: float | None


def compute_metrics(requests: Sequence[RequestTiming]) -> Metrics:
    if not requests:
        raise ValueError("no requests to score")
    output_tokens = sum(r.num_output_tokens for r in requests)
    duration = max(r.finish_s for r in requests)
    streamed = [r.token_times for r in requests if r.token_times]
    ttft_mean = ttft_p99 = itl_mean = None
    # Per-token figures only when every request has them: a partial set would describe a different workload.
    if len(streamed) == len(requests):
        ttfts = [times[0] for times in streamed]
        ttft_mean = sum(ttfts) / len(ttfts)
        ttft_p99 = percentile(ttfts, 99)
        gaps = [b - a for times in streamed for a, b in zip(times, times[1:])]
        itl_mean = sum(gaps) / len(gaps) if gaps else None
    return Metrics(
        num_requests=len(requests),
        output_tokens=output_tokens,
        duration_s=duration,
        output_tokens_per_s=output_tokens / duration if duration > 0 else 0.0,
        ttft_mean_s=ttft_mean,
        ttft_p99_s=ttft_p99,
        itl_mean_s=itl_mean,
    )


def _maxrss_bytes(who: int) -> int:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    value = resource.getrusage(who).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


def peak_rss_bytes() -> tuple[int, int]:
    """(this process's peak RSS, the peak RSS of its largest terminated-and-waited-for descendant).

    The kernel keeps the children figure as a maximum over single processes, not a sum, so for a contender
    that runs its model in a child the sum of the two is the honest approximation of its footprint."""
    return _maxrss_bytes(resource.RUSAGE_SELF), _maxrss_bytes(resource.RUSAGE_CHILDREN)
