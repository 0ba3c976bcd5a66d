"""`chatstream bench` over several concurrencies and dtypes: one run per (dtype, concurrency), then one summary.

Owns `run_matrix` (the loop: for each dtype, for each concurrency, every contender, each in its own process as
usual) and `matrix_rows` / `render_matrix`: output tokens/s and peak RSS of every contender at every point, with
the ratios the README quotes: each contender against vLLM in the same dtype and at the same concurrency, and
against our engine in fp32 at the same concurrency (what bf16 and int8 buy). Standard library only.
"""

from __future__ import annotations

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
               progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every (dtype, concurrency) run's summary, each table printed as soon as its run ends."""
    summaries = []
    for dtype in dtypes:
        for concurrency in concurrencies:
            progress(f"== dtype {dtype}, {concurrency} concurrent requests")
            summary = summarize(run_benchmark(replace(config, dtype=dtype, num_requests=concurrency), progress))
            render_table(summary, table_out, plain=plain)
            print(file=table_out)
            summaries.append(summary)
    return summaries


def _tok_s(summaries: list[dict[str, Any]], contender: str, dtype: str, concurrency: int) -> float | None:
    for summary in summaries:
        if summary["dtype"] == dtype and summary["num_requests"] == concurrency:
            for row in summary["results"]:
                if row["contender"] == contender and row["ok"]:
                    return row["metrics"]["output_tokens_per_s"]
    return None


def matrix_rows(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (contender, dtype, concurrency) that ran, with its ratios."""
    rows = []
    for summary in summaries:
        dtype, concurrency = summary["dtype"], summary["num_requests"]
        for row in summary["results"]:
            if not row["ok"]:
                rows.append({"contender": row["contender"], "dtype": dtype, "concurrency": concurrency, "ok": False})
                continue
            tok_s = row["metrics"]["output_tokens_per_s"]
            rows.append({
                "contender": row["contender"], "dtype": dtype, "concurrency": concurrency, "ok": True,
                "output_tokens_per_s": tok_s, "peak_rss_bytes": row["peak_rss_bytes"],
                "ttft_p99_s": row["metrics"]["ttft_p99_s"], "itl_mean_s": row["metrics"]["itl_mean_s"],
                "vs_vllm_same_dtype": ratio(tok_s, _tok_s(summaries, REFERENCE_VLLM, dtype, concurrency)),
                "vs_chatstream_fp32": ratio(tok_s, _tok_s(summaries, *REFERENCE_OURS, concurrency)),
            })
    return rows


def _ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def render_matrix(rows: list[dict[str, Any]], out: TextIO) -> None:
    headers = ("contender", "dtype", "concurrent", "out tok/s", "vs vLLM (same dtype)", "vs chatstream fp32",
               "TTFT p99 s", "ITL mean ms", "peak RSS MiB")
    lines = [list(headers)]
    for r in rows:
        if not r["ok"]:
            lines.append([r["contender"], r["dtype"], str(r["concurrency"]), "FAILED"] + [""] * 5)
            continue
        lines.append([
            r["contender"], r["dtype"], str(r["concurrency"]), f"{r['output_tokens_per_s']:,.1f}",
            _ratio_text(r["vs_vllm_same_dtype"]), _ratio_text(r["vs_chatstream_fp32"]),
            "-" if r["ttft_p99_s"] is None else f"{r['ttft_p99_s']:.3f}",
            "-" if r["itl_mean_s"] is None else f"{r['itl_mean_s'] * 1000:.1f}",
            f"{r['peak_rss_bytes'] / MIB:,.0f}",
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    print("Summary: every contender at every concurrency (ratios of output tokens/s)", file=out)
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip(), file=out)
