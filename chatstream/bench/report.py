"""Turning a `BenchOutcome` into what people read: a table (rich when installed, plain text otherwise) with
every contender's numbers and their ratio to the hf-sequential baseline, and the same content as JSON.

Owns `summarize` (outcome -> JSON-ready dict, the single source both renderings read), `render_table` and
`to_json`. Ratios are contender / baseline for every metric: above 1 is better for tokens/s, below 1 is better
for latency and memory.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, TextIO

from chatstream.bench.contenders import BASELINE, DESCRIPTIONS
from chatstream.bench.metrics import compute_metrics, ratio
from chatstream.bench.runner import BenchOutcome

MIB = 1024**2
RATIO_KEYS = ("output_tokens_per_s", "ttft_mean_s", "ttft_p99_s", "itl_mean_s", "peak_rss_bytes")
# Only vLLM runs its model in child processes. For the others the kernel's children figure is an
# artifact: a helper process spawned (vfork) by a big process reports the parent's RSS as its own.
MODEL_IN_CHILD_PROCESSES = frozenset({"vllm"})


def summarize(outcome: BenchOutcome) -> dict[str, Any]:
    workload = outcome.workload
    results: list[dict[str, Any]] = []
    for item in outcome.outcomes:
        if item.result is None:
            continue
        res = item.result
        row: dict[str, Any] = {"contender": item.name, "description": DESCRIPTIONS.get(item.name, ""),
                               "ok": res.ok, "error": res.error, "process_s": item.process_s,
                               "versions": res.versions, "log": item.log_path}
        if res.ok and res.run is not None:
            row.update(metrics=asdict(compute_metrics(res.run.requests)),
                       peak_rss_bytes=res.peak_rss_bytes + (res.peak_rss_children_bytes
                                                            if item.name in MODEL_IN_CHILD_PROCESSES else 0),
                       peak_rss_self_bytes=res.peak_rss_bytes, peak_rss_children_bytes=res.peak_rss_children_bytes,
                       startup_s=res.run.startup_s, extra=res.run.extra, notes=res.run.notes,
                       output_token_ids=[r.output_token_ids for r in res.run.requests])
        results.append(row)
    base = next((r for r in results if r["contender"] == BASELINE and r["ok"]), None)
    for row in results:
        if not row["ok"]:
            continue
        row["ratios_vs_baseline"] = {key: ratio(_value(row, key), _value(base, key)) if base else None
                                     for key in RATIO_KEYS}
        # Greedy decoding of the same ids should give the same tokens; batching round-off may flip a near-tie.
        row["outputs_match_baseline"] = (
            sum(a == b for a, b in zip(row["output_token_ids"], base["output_token_ids"])) if base else None)
    for row in results:
        row.pop("output_token_ids", None)
    # Our engine with the prefix cache against itself without it: the one comparison the cache is judged by.
    on, off = (next((r for r in results if r["contender"] == n and r["ok"]), None)
               for n in ("chatstream", "chatstream-noprefix"))
    prefix_effect = {key: ratio(_value(on, key), _value(off, key)) for key in RATIO_KEYS} if on and off else None
    return {
        "model": outcome.model, "dtype": outcome.config.dtype, "threads": outcome.threads,
        "seed": workload.seed, "num_requests": len(workload.prompts), "prompt_len": workload.prompt_len,
        "shared_prefix_len": workload.shared_prefix_len, "output_len": workload.output_len,
        "kv_cache_bytes": outcome.kv_cache_bytes, "max_model_len": outcome.max_model_len, "baseline": BASELINE,
        "results": results,
        "prefix_caching_effect": prefix_effect,  # chatstream / chatstream-noprefix, per metric
        "skipped": {o.name: o.skipped for o in outcome.outcomes if o.skipped is not None},
    }


def _value(row: dict[str, Any] | None, key: str) -> float | None:
    if row is None or not row.get("ok"):
        return None
    return row["peak_rss_bytes"] if key == "peak_rss_bytes" else row["metrics"][key]


def to_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2)


def _cell(value: float | None, scale: float, digits: int, rel: float | None) -> str:
    if value is None:
        return "n/a"
    text = f"{value * scale:,.{digits}f}"
    return f"{text} ({rel:.2f}x)" if rel is not None else text


HEADERS = ("contender", "out tok/s", "TTFT mean s", "TTFT p99 s", "ITL mean ms", "peak RSS MiB",
           "KV blocks used/alloc", "prefix hit", "same out", "start-up s")


def table_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for row in summary["results"]:
        if not row["ok"]:
            rows.append([row["contender"], "FAILED"] + [""] * (len(HEADERS) - 2))
            continue
        m, r, extra = row["metrics"], row["ratios_vs_baseline"], row["extra"]
        kv = (f"{extra['kv_blocks_used_peak']}/{extra['kv_blocks_total']}"
              if "kv_blocks_total" in extra else "-")
        hit = f"{extra['prefix_cache_hit_rate']:.1%}" if "prefix_cache_hit_rate" in extra else "-"
        same = row["outputs_match_baseline"]
        rows.append([
            row["contender"],
            _cell(m["output_tokens_per_s"], 1, 1, r["output_tokens_per_s"]),
            _cell(m["ttft_mean_s"], 1, 3, r["ttft_mean_s"]),
            _cell(m["ttft_p99_s"], 1, 3, r["ttft_p99_s"]),
            _cell(m["itl_mean_s"], 1000, 1, r["itl_mean_s"]),
            _cell(row["peak_rss_bytes"], 1 / MIB, 0, r["peak_rss_bytes"]),
            kv, hit,
            "-" if same is None else f"{same}/{m['num_requests']}",
            f"{row['startup_s']:.1f}",
        ])
    return rows


def _title(summary: dict[str, Any]) -> str:
    prefix = f"{summary['shared_prefix_len']} shared + " if summary["shared_prefix_len"] else ""
    return (f"{summary['model']} ({summary['dtype']}), {summary['threads']} threads: {summary['num_requests']} "
            f"requests at t=0, {prefix}{summary['prompt_len']} prompt -> {summary['output_len']} output tokens, "
            f"KV budget {summary['kv_cache_bytes'] / MIB:.0f} MiB")


def _footnotes(summary: dict[str, Any]) -> list[str]:
    notes = [f"(x) = ratio to {summary['baseline']}: higher is better for tok/s, lower for latency and memory."]
    effect = summary.get("prefix_caching_effect")
    if effect:
        parts = [f"{label} {effect[key]:.2f}x" for key, label in (("output_tokens_per_s", "tok/s"),
                 ("ttft_mean_s", "TTFT mean"), ("ttft_p99_s", "TTFT p99"), ("itl_mean_s", "ITL"))
                 if effect[key] is not None]
        notes.append("prefix caching on/off (chatstream / chatstream-noprefix): " + ", ".join(parts))
    for row in summary["results"]:
        if not row["ok"]:
            last = (row["error"] or "").strip().splitlines()[-1:] or ["unknown error"]
            where = f" (log: {row['log']})" if row.get("log") else ""
            notes.append(f"{row['contender']} failed: {last[0]}{where}")
        for note in row.get("notes") or []:
            notes.append(f"{row['contender']}: {note}")
    notes += [f"{name} skipped: {why}" for name, why in summary["skipped"].items()]
    return notes


def render_table(summary: dict[str, Any], out: TextIO, plain: bool = False) -> None:
    rows = table_rows(summary)
    if not plain:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            plain = True
    if plain:
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(HEADERS)]
        print(_title(summary), file=out)
        for line in [list(HEADERS)] + rows:
            print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip(), file=out)
    else:
        table = Table(title=_title(summary))
        for i, header in enumerate(HEADERS):
            table.add_column(header, justify="left" if i == 0 else "right", no_wrap=i == 0)
        for row in rows:
            table.add_row(*row)
        Console(file=out, width=max(160, Console(file=out).width)).print(table)
    for note in _footnotes(summary):
        print(note, file=out)
