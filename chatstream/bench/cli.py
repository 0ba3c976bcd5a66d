"""The `chatstream bench` command line: options -> `BenchConfig` -> run -> table and/or JSON.

Owns `add_bench_arguments` (so the top-level `chatstream` parser can mount it as a subcommand) and `run_bench`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from chatstream.bench.contenders import CONTENDER_MODULES
from chatstream.commands.argument_types import positive_int


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_list(text: str) -> list[int]:
    return [positive_int(part) for part in text.split(",") if part.strip()]


DTYPES = ("float32", "bfloat16", "float16")


def _dtype_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    bad = [n for n in names if n not in DTYPES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"dtypes must be among {', '.join(DTYPES)}, got {text!r}")
    return names


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)  # numbers, true/false, null
    except json.JSONDecodeError:
        return key, raw


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value  # environment values stay strings, exactly as typed


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    names = ", ".join(CONTENDER_MODULES)
    work = parser.add_argument_group("workload")
    work.add_argument("--model", default=None,
                      help="model directory or hub id (default: the bundled SmolLM2-135M-Instruct)")
    work.add_argument("--num-requests", type=positive_int, default=32, help="concurrent requests, all at t=0 (32)")
    work.add_argument("--concurrency", type=_positive_list, default=None, metavar="N[,N...]",
                      help="run the whole benchmark once per value (e.g. 1,8,32) and end with a summary of every "
                           "contender at every concurrency; overrides --num-requests")
    work.add_argument("--repeat", type=positive_int, default=1, metavar="N",
                      help="run every point N times, the contenders in alternating order by round (A B, B A, ...); "
                           "the summary gives each contender's median and each ratio's geometric mean over the "
                           "rounds, every ratio taken within one round (1)")
    work.add_argument("--prompt-len", type=positive_int, default=64,
                      help="prompt tokens per request, after any shared prefix (64)")
    work.add_argument("--output-len", type=positive_int, default=128,
                      help="tokens generated per request; EOS is ignored so every request makes exactly this many (128)")
    work.add_argument("--shared-prefix-len", type=_non_negative, default=0,
                      help="tokens of one common prefix that starts every prompt, for prefix caching (0 = none)")
    work.add_argument("--seed", type=int, default=0, help="workload seed (0)")
    run = parser.add_argument_group("contenders")
    run.add_argument("--contenders", default=None,
                     help=f"comma-separated subset of: {names} (default: every one available here; "
                          "chatstream-noprefix only with a shared prefix)")
    run.add_argument("--dtype", type=_dtype_list, default=["float32"], metavar="DTYPE[,DTYPE...]",
                     help="float32 | bfloat16 | float16, or several (e.g. float32,bfloat16: each is run and the "
                          "summary compares them) (float32)")
    run.add_argument("--threads", type=positive_int, default=None,
                     help="CPU threads per contender (default: all cores)")
    run.add_argument("--kv-cache-gb", type=float, default=None,
                     help="KV cache budget for every paged engine (default: enough for the whole workload at once)")
    run.add_argument("--max-num-batched-tokens", type=positive_int, default=None,
                     help="per-step token budget for every paged engine (default: each engine's own)")
    run.add_argument("--engine-option", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                     help="extra LLM(...) option for our engine, e.g. max_num_seqs=64 (repeatable)")
    run.add_argument("--no-warmup", dest="warmup", action="store_false",
                     help="skip the short untimed generation each contender runs first")
    run.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per contender (3600)")
    vllm = parser.add_argument_group("vLLM")
    vllm.add_argument("--vllm-python", default=None,
                      help="Python interpreter that has vLLM (default: this one, if it can import vllm)")
    vllm.add_argument("--vllm-cpu-bind", default=None,
                      help="VLLM_CPU_OMP_THREADS_BIND for the vLLM run (default: the first --threads cores, e.g. 0-1)")
    vllm.add_argument("--vllm-reserved-cpus", type=_non_negative, default=0,
                      help="VLLM_CPU_NUM_OF_RESERVED_CPU for the vLLM run (0)")
    vllm.add_argument("--vllm-enforce-eager", action="store_true",
                      help="skip vLLM's torch.compile (faster start, usually slower run)")
    vllm.add_argument("--vllm-env", type=_env_pair, action="append", default=[], metavar="KEY=VALUE",
                      help="extra environment for the vLLM worker, e.g. VLLM_ENABLE_V1_MULTIPROCESSING=0 (repeatable)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON; '-' = stdout "
                                                                  "(the table then goes to stderr)")
    out.add_argument("--plain", action="store_true", help="plain-text table even when rich is installed")
    out.add_argument("--verbose", action="store_true", help="show the contenders' own output while they run")


def run_bench(args: argparse.Namespace) -> int:
    """0 when every contender that ran succeeded, 1 when one failed, 2 for unusable options."""
    from chatstream.bench.report import render_table, summarize
    from chatstream.bench.runner import BenchConfig, run_benchmark

    config = BenchConfig(
        model=args.model, num_requests=args.num_requests, prompt_len=args.prompt_len, output_len=args.output_len,
        shared_prefix_len=args.shared_prefix_len,
        contenders=[c.strip() for c in args.contenders.split(",") if c.strip()] if args.contenders else None,
        dtype=args.dtype[0], threads=args.threads, seed=args.seed, kv_cache_gb=args.kv_cache_gb,
        max_num_batched_tokens=args.max_num_batched_tokens, warmup=args.warmup, vllm_python=args.vllm_python,
        vllm_cpu_bind=args.vllm_cpu_bind, vllm_reserved_cpus=args.vllm_reserved_cpus,
        vllm_enforce_eager=args.vllm_enforce_eager, vllm_env=dict(args.vllm_env),
        engine_options=dict(args.engine_option),
        timeout_s=args.timeout, verbose=args.verbose,
    )
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    table_out = sys.stderr if args.json == "-" else sys.stdout
    try:
        if args.concurrency or len(args.dtype) > 1 or args.repeat > 1:
            return _run_matrix(args, config, table_out, progress)
        outcome = run_benchmark(config, progress=progress)
    except ValueError as exc:
        print(f"chatstream bench: {exc}", file=sys.stderr)
        return 2
    summary = summarize(outcome)
    render_table(summary, table_out, plain=args.plain)
    _write_json(args.json, summary)
    return 0 if all(r["ok"] for r in summary["results"]) else 1


def _run_matrix(args: argparse.Namespace, config: Any, table_out: Any, progress: Any) -> int:
    from chatstream.bench.matrix import matrix_rows, render_matrix, run_matrix

    concurrencies = args.concurrency or [args.num_requests]
    summaries = run_matrix(config, args.dtype, concurrencies, table_out, args.plain, progress, args.repeat)
    rows = matrix_rows(summaries)
    render_matrix(rows, table_out)
    _write_json(args.json, {"runs": summaries, "summary": rows})
    return 0 if all(r["ok"] for r in rows) else 1


def _write_json(target: str | None, data: dict[str, Any]) -> None:
    from chatstream.bench.report import to_json

    if target == "-":
        print(to_json(data))
    elif target:
        Path(target).write_text(to_json(data) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chatstream bench", description="Throughput benchmark vs baselines.")
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
