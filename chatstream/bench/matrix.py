"""`chatstream bench` over several concurrencies, dtypes and rounds: one run per point and round, then one summary.

Owns `run_matrix` (the loop: for each dtype, for each concurrency, `repeat` rounds of every contender, each in its
own process as usual, the contenders' order reversed every other round so a drift in the machine's speed does not
always favour the same one) and `matrix_rows` / `render_matrix`: output tokens/s and peak RSS of every contender at
every point, with the ratios the README quotes: each contender against vLLM in the same dtype and at the same
concurrency, and against our engine in fp32 at the same concurrency (what bf16 and int8 buy). With rounds, each
ratio is taken within a round (the two runs minutes apart) and the summary gives their geometric mean, the
contender's median tokens/s and the largest peak RSS. Standard library only.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TextIO

from chatstream.bench.metrics import ratio
from chatstream.bench.report import render_table, summarize
from chatstream.bench.runner import BenchConfig, run_benchmark

MIB = 1024**2
REFERENCE_VLLM = "vllm"
REFERENCE_OURS = ("chatstream", "float32")


def run_matrix(config: BenchConfig, dtypes: list[str], concurrencies: list[int], table_out: TextIO, plain: bool,
               progress: Callable[[str], None], repeat: int = 1) -> list[dict[str, Any]]:
    """Every (dtype, concurrency, round) run's summary, each table printed as soon as its run ends."""
    summaries = []
    for dtype in dtypes:
        for concurrency in concurrencies:
            for round_ in range(1, repeat + 1):
                label = f" (round {round_} of {repeat})" if repeat > 1 else ""
                progress(f"== dtype {dtype}, {concurrency} concurrent requests{label}")
                point = replace(config, dtype=dtype, num_requests=concurrency, reverse_order=round_ % 2 == 0)
                summary = summarize(run_benchmark(point, progress))
                summary["round"] = round_
                render_table(summary, table_out, plain=plain)
                print(file=table_out)
                summaries.append(summary)
    return summaries


def _row(summaries: list[dict[str, Any]], contender: str, dtype: str, concurrency: int,
         round_: int) -> dict[str, Any] | None:
    for summary in summaries:
        if summary["dtype"] == dtype and summary["num_requests"] == concurrency and summary.get("round", 1) == round_:
            for row in summary["results"]:
                if row["contender"] == contender and row["ok"]:
                    return row
    return None


def _tok_s(row: dict[str, Any] | None) -> float | None:
    return None if row is None else row["metrics"]["output_tokens_per_s"]


def _geometric_mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None and v > 0]
    if not present or len(present) != len(values):
        return None  # a round without the reference: no fair mean
    return math.exp(sum(math.log(v) for v in present) / len(present))


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def matrix_rows(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (contender, dtype, concurrency) that ran, with its ratios (over its rounds)."""
    points: dict[tuple[str, str, int], list[int]] = {}
    for summary in summaries:
        for row in summary["results"]:
            key = (row["contender"], summary["dtype"], summary["num_requests"])
            points.setdefault(key, []).append(summary.get("round", 1))
    rows = []
    for (contender, dtype, concurrency), rounds in points.items():
        runs = [(r, _row(summaries, contender, dtype, concurrency, r)) for r in rounds]
        ok = [(r, row) for r, row in runs if row is not None]
        if len(ok) != len(runs):
            rows.append({"contender": contender, "dtype": dtype, "concurrency": concurrency, "ok": False})
            continue
        per_round = [{
            "round": r, "output_tokens_per_s": _tok_s(row),
            "vs_vllm_same_dtype": ratio(_tok_s(row), _tok_s(_row(summaries, REFERENCE_VLLM, dtype, concurrency, r))),
            "vs_chatstream_fp32": ratio(_tok_s(row), _tok_s(_row(summaries, *REFERENCE_OURS, concurrency, r))),
        } for r, row in ok]
        metrics = [row["metrics"] for _, row in ok]
        rows.append({
            "contender": contender, "dtype": dtype, "concurrency": concurrency, "ok": True,
            "output_tokens_per_s": _median([m["output_tokens_per_s"] for m in metrics]),
            "peak_rss_bytes": max(row["peak_rss_bytes"] for _, row in ok),
            "ttft_p99_s": _median([m["ttft_p99_s"] for m in metrics]),
            "itl_mean_s": _median([m["itl_mean_s"] for m in metrics]),
            "vs_vllm_same_dtype": _geometric_mean([p["vs_vllm_same_dtype"] for p in per_round]),
            "vs_chatstream_fp32": _geometric_mean([p["vs_chatstream_fp32"] for p in per_round]),
            "rounds": per_round,
        })
    return rows


def _ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def render_matrix(rows: list[dict[str, Any]], out: TextIO) -> None:
    rounds = max((len(r.get("rounds", [])) for r in rows), default=1)
    headers = ["contender", "dtype", "concurrent", "out tok/s", "vs vLLM (same dtype)", "vs chatstream fp32",
               "TTFT p99 s", "ITL mean ms", "peak RSS MiB"]
    if rounds > 1:
        headers.append("vs vLLM by round")
    lines = [headers]
    for r in rows:
        if not r["ok"]:
            lines.append([r["contender"], r["dtype"], str(r["concurrency"]), "FAILED"] + [""] * (len(headers) - 4))
            continue
        line = [
            r["contender"], r["dtype"], str(r["concurrency"]), f"{r['output_tokens_per_s']:,.1f}",
            _ratio_text(r["vs_vllm_same_dtype"]), _ratio_text(r["vs_chatstream_fp32"]),
            "-" if r["ttft_p99_s"] is None else f"{r['ttft_p99_s']:.3f}",
            "-" if r["itl_mean_s"] is None else f"{r['itl_mean_s'] * 1000:.1f}",
            f"{r['peak_rss_bytes'] / MIB:,.0f}",
        ]
        if rounds > 1:
            line.append(", ".join(_ratio_text(p["vs_vllm_same_dtype"]) for p in r["rounds"]))
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    title = "Summary: every contender at every concurrency (ratios of output tokens/s)"
    if rounds > 1:
        title += f"; {rounds} rounds: median tok/s, TTFT and ITL, geometric mean of the rounds' ratios, largest RSS"
    print(title, file=out)
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip(), file=out)
