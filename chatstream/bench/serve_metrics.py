"""Per-request records of `chatstream bench serve` -> the numbers one load point is judged by.

Definitions (as serving benchmarks usually make them):
  duration         first request sent -> last response finished.
  throughput       output tokens (the server's own usage count) / duration; requests / duration.
  TTFT             request sent -> first chunk with content.
  ITL              gaps between consecutive content chunks of one request, pooled over all requests.
  E2E              request sent -> its stream ended.
  goodput          requests per second that met the SLO: TTFT <= slo_ttft_s and their own mean ITL
                   (time per output chunk after the first) <= slo_itl_s.
  pooled TTFT      the TTFTs of every round of a load point taken together: with about 75 requests
                   a round, one round's p99 is nearly its slowest request; pooled rounds estimate it
                   from several times as many.
Percentiles interpolate linearly (`chatstream.bench.metrics.percentile`). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatstream.bench.metrics import percentile
from chatstream.bench.serve_client import RequestRecord

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Slo:
    ttft_s: float = 2.0
    itl_s: float = 0.2


def _spread(values: list[float]) -> dict[str, float | None]:
    return {f"p{q}": (percentile(values, q) if values else None) for q in PERCENTILES} | {
        "mean": sum(values) / len(values) if values else None}


def meets_slo(record: RequestRecord, slo: Slo) -> bool:
    if not record.ok or record.ttft_s is None or record.ttft_s > slo.ttft_s:
        return False
    gaps = record.itls_s
    return not gaps or sum(gaps) / len(gaps) <= slo.itl_s


def summarize_load(records: list[RequestRecord], slo: Slo) -> dict[str, Any]:
    ok = [r for r in records if r.ok]
    start = min((r.sent_s for r in records), default=0.0)
    end = max((r.sent_s + r.end_s for r in ok), default=start)
    duration = end - start
    tokens = sum(r.output_tokens for r in ok)
    good = [r for r in ok if meets_slo(r, slo)]
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    return {
        "num_requests": len(records),
        "num_failed": len(records) - len(ok),
        "errors": sorted({r.error for r in records if r.error})[:5],
        "duration_s": duration,
        "output_tokens": tokens,
        "prompt_tokens": sum(r.prompt_tokens for r in ok),
        "output_tokens_per_s": tokens / duration if duration > 0 else 0.0,
        "requests_per_s": len(ok) / duration if duration > 0 else 0.0,
        "goodput_requests_per_s": len(good) / duration if duration > 0 else 0.0,
        "slo_met_share": len(good) / len(records) if records else 0.0,
        "ttft_s": _spread(ttfts),
        "ttft_samples_s": ttfts,  # each request's, so rounds can be pooled (`serve_report.ratio_notes`)
        "itl_s": _spread([gap for r in ok for gap in r.itls_s]),
        "e2e_s": _spread([r.end_s for r in ok]),
        "slo": {"ttft_s": slo.ttft_s, "itl_s": slo.itl_s},
    }
