"""Tests for `chatstream.bench`: the metric definitions on synthetic timings, workload determinism and the
shared prefix, the report's ratios, the CLI options, and one small end-to-end run of the runner (real child
processes) on a tiny random Llama saved to a temporary directory."""

from __future__ import annotations

import argparse
import importlib.util
import io
from pathlib import Path

import pytest

from chatstream.bench.cli import add_bench_arguments
from chatstream.bench.metrics import compute_metrics, peak_rss_bytes, percentile, ratio
from chatstream.bench.protocol import ContenderRun, RequestTiming, WorkerResult
from chatstream.bench.report import render_table, summarize
from chatstream.bench.runner import BenchConfig, BenchOutcome, ContenderOutcome, cpu_list, run_benchmark
from chatstream.bench.workload import build_workload


def char_encode(text: str) -> list[int]:
    return [ord(c) for c in text]


def timing(times: list[float], ids: list[int] | None = None) -> RequestTiming:
    return RequestTiming(len(times), times[-1], times, ids if ids is not None else list(range(len(times))))


# -- metrics -----------------------------------------------------------------------------------
def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([4, 1, 3, 2], 50) == pytest.approx(2.5)
    assert percentile([1, 2, 3, 4], 99) == pytest.approx(3.97)
    assert percentile([1, 2, 3, 4], 0) == 1 and percentile([1, 2, 3, 4], 100) == 4
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_ratio_handles_missing_and_zero() -> None:
    assert ratio(3.0, 1.5) == pytest.approx(2.0)
    assert ratio(None, 1.0) is None and ratio(1.0, None) is None and ratio(1.0, 0.0) is None


def test_metrics_from_synthetic_timings() -> None:
    m = compute_metrics([timing([1.0, 2.0, 3.0]), timing([2.0, 4.0, 6.0])])
    assert m.output_tokens == 6 and m.duration_s == 6.0
    assert m.output_tokens_per_s == pytest.approx(1.0)
    assert m.ttft_mean_s == pytest.approx(1.5)
    assert m.ttft_p99_s == pytest.approx(1.99)
    assert m.itl_mean_s == pytest.approx(1.5)  # gaps 1, 1, 2, 2 pooled


def test_metrics_without_token_times_report_only_throughput() -> None:
    m = compute_metrics([RequestTiming(4, 2.0, None), RequestTiming(4, 4.0, None)])
    assert m.output_tokens_per_s == pytest.approx(2.0)
    assert m.ttft_mean_s is None and m.ttft_p99_s is None and m.itl_mean_s is None


def test_peak_rss_is_positive() -> None:
    own, children = peak_rss_bytes()
    assert own > 10 * 1024**2 and children >= 0


# -- workload ----------------------------------------------------------------------------------
def test_workload_is_deterministic_and_distinct() -> None:
    a = build_workload(char_encode, num_requests=16, prompt_len=24, output_len=5, seed=3)
    b = build_workload(char_encode, num_requests=16, prompt_len=24, output_len=5, seed=3)
    c = build_workload(char_encode, num_requests=16, prompt_len=24, output_len=5, seed=4)
    assert a == b and a.prompts != c.prompts
    assert all(len(p) == 24 for p in a.prompts)
    assert len({tuple(p) for p in a.prompts}) == 16
    assert a.warmup_prompt and len(a.warmup_prompt) <= 8


def test_long_prompts_wrap_around_the_corpus() -> None:
    w = build_workload(char_encode, num_requests=2, prompt_len=20_000, output_len=1)
    assert all(len(p) == 20_000 for p in w.prompts)


def test_shared_prefix() -> None:
    w = build_workload(char_encode, num_requests=8, prompt_len=10, output_len=4, shared_prefix_len=200, seed=1)
    prefix = w.prompts[0][:200]
    assert all(len(p) == 210 and p[:200] == prefix for p in w.prompts)
    assert len({tuple(p[200:]) for p in w.prompts}) == 8
    assert w.max_prompt_len == 210


def test_workload_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="prompt_len"):
        build_workload(char_encode, num_requests=1, prompt_len=0, output_len=1)


# -- runner helpers, protocol, report ----------------------------------------------------------
def test_cpu_list() -> None:
    assert cpu_list([0, 1, 2, 5]) == "0-2,5" and cpu_list([3]) == "3" and cpu_list([1, 0]) == "0-1"


def _result(name: str, times: list[list[float]], rss: int, ids: list[list[int]] | None = None) -> WorkerResult:
    reqs = [timing(t, ids[i] if ids else None) for i, t in enumerate(times)]
    return WorkerResult(name, True, run=ContenderRun(reqs, startup_s=1.0), peak_rss_bytes=rss)


def test_worker_result_json_round_trip() -> None:
    result = _result("hf-static", [[0.5, 1.0]], 123)
    assert WorkerResult.from_json(result.to_json()) == result


def test_summary_ratios_against_the_baseline() -> None:
    workload = build_workload(char_encode, num_requests=2, prompt_len=4, output_len=2)
    base = _result("hf-sequential", [[1.0, 2.0], [3.0, 4.0]], 100 * 1024**2, ids=[[1, 2], [3, 4]])
    fast = _result("hf-static", [[0.5, 1.0], [0.5, 1.0]], 200 * 1024**2, ids=[[1, 2], [3, 9]])
    failed = WorkerResult("vllm", False, error="Traceback...\nRuntimeError: boom")
    outcome = BenchOutcome(BenchConfig(), "m", 2, 64 * 1024**2, 6, workload, [
        ContenderOutcome("hf-sequential", base), ContenderOutcome("hf-static", fast),
        ContenderOutcome("vllm", failed), ContenderOutcome("chatstream-noprefix", skipped="no prefix")])
    summary = summarize(outcome)
    rows = {r["contender"]: r for r in summary["results"]}
    ratios = rows["hf-static"]["ratios_vs_baseline"]
    assert ratios["output_tokens_per_s"] == pytest.approx(4.0)  # 4 tokens in 1 s vs 4 in 4 s
    assert ratios["ttft_mean_s"] == pytest.approx(0.25)
    assert ratios["peak_rss_bytes"] == pytest.approx(2.0)
    assert rows["hf-static"]["outputs_match_baseline"] == 1
    assert rows["hf-sequential"]["ratios_vs_baseline"]["output_tokens_per_s"] == pytest.approx(1.0)
    assert summary["skipped"] == {"chatstream-noprefix": "no prefix"}
    text = io.StringIO()
    render_table(summary, text, plain=True)
    out = text.getvalue()
    assert "4.0 (4.00x)" in out and "FAILED" in out and "RuntimeError: boom" in out and "no prefix" in out


def test_prefix_caching_effect_compares_our_engine_with_itself() -> None:
    workload = build_workload(char_encode, num_requests=1, prompt_len=4, output_len=2)
    on = _result("chatstream", [[0.5, 1.0]], 100)
    off = _result("chatstream-noprefix", [[1.0, 2.0]], 100)
    outcome = BenchOutcome(BenchConfig(), "m", 2, 1, 6, workload,
                           [ContenderOutcome("chatstream", on), ContenderOutcome("chatstream-noprefix", off)])
    summary = summarize(outcome)
    assert summary["prefix_caching_effect"]["output_tokens_per_s"] == pytest.approx(2.0)
    assert summary["prefix_caching_effect"]["ttft_mean_s"] == pytest.approx(0.5)
    assert summary["results"][0]["ratios_vs_baseline"]["output_tokens_per_s"] is None  # no baseline ran
    text = io.StringIO()
    render_table(summary, text, plain=True)
    assert "prefix caching on/off (chatstream / chatstream-noprefix): tok/s 2.00x" in text.getvalue()


def test_cli_options() -> None:
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    args = parser.parse_args([])
    assert (args.num_requests, args.prompt_len, args.output_len, args.shared_prefix_len) == (32, 64, 128, 0)
    assert args.dtype == ["float32"] and args.json is None and args.warmup and args.concurrency is None
    args = parser.parse_args(["--concurrency", "1,8,32", "--dtype", "float32,bfloat16"])
    assert args.concurrency == [1, 8, 32] and args.dtype == ["float32", "bfloat16"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--dtype", "float64"])
    args = parser.parse_args(["--engine-option", "max_num_seqs=8", "--engine-option", "x=abc", "--json", "-"])
    assert dict(args.engine_option) == {"max_num_seqs": 8, "x": "abc"} and args.json == "-"


def _point(dtype: str, concurrency: int, round_: int, tok_s: dict[str, float], rss: int = 100) -> dict:
    """A `summarize` result as `run_matrix` keeps it: only what `matrix_rows` reads."""
    def row(name: str, value: float) -> dict:
        return {"contender": name, "ok": True, "peak_rss_bytes": rss * 1024**2,
                "metrics": {"output_tokens_per_s": value, "ttft_p99_s": 1.0 / value, "itl_mean_s": 0.01}}
    return {"dtype": dtype, "num_requests": concurrency, "round": round_,
            "results": [row(name, value) for name, value in tok_s.items()]}


def test_rounds_take_each_ratio_within_a_round_and_report_their_geometric_mean() -> None:
    from chatstream.bench.matrix import matrix_rows, render_matrix

    # The machine halves its speed between rounds: ratios within a round stay fair, across rounds they would not.
    summaries = [_point("float32", 32, 1, {"chatstream": 400.0, "vllm": 320.0}, rss=1100),
                 _point("float32", 32, 2, {"vllm": 180.0, "chatstream": 200.0}, rss=1120),
                 _point("bfloat16", 32, 1, {"chatstream": 900.0, "vllm": 1000.0}),
                 _point("bfloat16", 32, 2, {"vllm": 400.0, "chatstream": 480.0})]
    rows = {(r["contender"], r["dtype"]): r for r in matrix_rows(summaries)}
    ours = rows["chatstream", "float32"]
    assert [p["vs_vllm_same_dtype"] for p in ours["rounds"]] == pytest.approx([1.25, 200 / 180])
    assert ours["vs_vllm_same_dtype"] == pytest.approx((1.25 * 200 / 180) ** 0.5)
    assert ours["output_tokens_per_s"] == pytest.approx(300.0)  # the median of 400 and 200
    assert ours["peak_rss_bytes"] == 1120 * 1024**2  # the largest
    bf16 = rows["chatstream", "bfloat16"]
    assert bf16["vs_vllm_same_dtype"] == pytest.approx((0.9 * 1.2) ** 0.5)
    assert bf16["vs_chatstream_fp32"] == pytest.approx((900 / 400 * 480 / 200) ** 0.5)
    assert rows["vllm", "bfloat16"]["vs_vllm_same_dtype"] == pytest.approx(1.0)
    text = io.StringIO()
    render_matrix(list(rows.values()), text)
    out = text.getvalue()
    assert "2 rounds" in out and "0.90x, 1.20x" in out and "1.25x, 1.11x" in out
    # A round in which the reference failed gives no mean at all rather than a mean of the others.
    summaries[3]["results"][0]["ok"] = False
    rows = {(r["contender"], r["dtype"]): r for r in matrix_rows(summaries)}
    assert rows["chatstream", "bfloat16"]["vs_vllm_same_dtype"] is None
    assert rows["vllm", "bfloat16"]["ok"] is False


def test_repeat_option_and_the_reversed_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from chatstream.bench import runner

    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    assert parser.parse_args([]).repeat == 1 and parser.parse_args(["--repeat", "3"]).repeat == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--repeat", "0"])
    ran: list[str] = []

    def fake_worker(job, *_args, **_kwargs):
        ran.append(job.contender)
        return ContenderOutcome(job.contender, _result(job.contender, [[0.5, 1.0]], 100))

    monkeypatch.setattr(runner, "run_worker", fake_worker)
    monkeypatch.setattr(runner, "select_contenders", lambda config: (["hf-static", "hf-sequential"], {}))
    monkeypatch.setattr(runner, "resolve_model", lambda model: "unused")
    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained",
                        lambda _m: (lambda text, add_special_tokens=False: {"input_ids": char_encode(text)}))
    for reverse in (False, True):
        runner.run_benchmark(BenchConfig(num_requests=1, prompt_len=4, output_len=2, kv_cache_gb=0.01,
                                         reverse_order=reverse))
    assert ran == ["hf-sequential", "hf-static", "hf-static", "hf-sequential"]  # the baseline first, then last


# -- end to end --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import build_tiny_model

    model, tokenizer = build_tiny_model("llama")
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.slow
def test_runner_end_to_end_on_a_tiny_model(tiny_llama_dir: Path) -> None:
    contenders = ["hf-sequential", "hf-static"]
    if importlib.util.find_spec("chatstream.facade.llm") is not None:
        contenders.append("chatstream")
    config = BenchConfig(model=str(tiny_llama_dir), num_requests=3, prompt_len=8, output_len=4,
                         shared_prefix_len=16, contenders=contenders, threads=1, timeout_s=300)
    summary = summarize(run_benchmark(config))
    rows = {r["contender"]: r for r in summary["results"]}
    assert set(rows) == set(contenders)
    for name, row in rows.items():
        assert row["ok"], f"{name}: {row['error']}"
        m = row["metrics"]
        assert m["num_requests"] == 3 and m["output_tokens"] == 12, name
        assert m["output_tokens_per_s"] > 0 and m["ttft_mean_s"] > 0 and m["itl_mean_s"] > 0, name
        assert row["peak_rss_bytes"] > 0, name
        # Greedy decoding of the same ids must agree with the baseline (the tiny model's margins are wide).
        assert row["outputs_match_baseline"] == 3, name
    if "chatstream" in rows:
        extra = rows["chatstream"]["extra"]
        assert 0 < extra["kv_blocks_used_peak"] <= extra["kv_blocks_total"]
        assert 0.0 <= extra["prefix_cache_hit_rate"] <= 1.0


@pytest.mark.slow
def test_matrix_over_concurrencies_and_int8(tiny_llama_dir: Path) -> None:
    from chatstream.bench.matrix import matrix_rows, render_matrix, run_matrix

    config = BenchConfig(model=str(tiny_llama_dir), prompt_len=8, output_len=4, contenders=["chatstream",
                         "chatstream-int8"], threads=1, timeout_s=300)
    tables = io.StringIO()
    rows = matrix_rows(run_matrix(config, ["float32"], [1, 3], tables, plain=True, progress=lambda _m: None))
    assert [(r["contender"], r["concurrency"]) for r in rows] == [
        ("chatstream", 1), ("chatstream-int8", 1), ("chatstream", 3), ("chatstream-int8", 3)]
    for r in rows:
        assert r["ok"] and r["output_tokens_per_s"] > 0 and r["peak_rss_bytes"] > 0, r
    assert [r["vs_chatstream_fp32"] for r in rows if r["contender"] == "chatstream"] == [1.0, 1.0]
    assert all(r["vs_vllm_same_dtype"] is None for r in rows)  # vLLM did not run
    text = io.StringIO()
    render_matrix(rows, text)
    assert "chatstream-int8  float32  3" in text.getvalue()
