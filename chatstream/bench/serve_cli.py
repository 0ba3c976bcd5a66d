"""`chatstream bench serve`: the serving benchmark over HTTP against OpenAI-compatible servers.

Owns the subcommand's options, the loop and `--json`; the text report, its ratios and `--plot`
are `chatstream.bench.serve_report`'s.

The loop starts every server first (those it was asked to start) and warms each up, then at each
load point (each Poisson rate, or the fixed concurrency) runs the servers one after the other.
Every measurement (a point, or a round of it) has a workload of its own, seeded `--seed` + its
index, and the servers of one measurement get the same one: conversations a server answered
before are still in its prefix cache, so a repeated workload would measure cache hits in every
measurement after the first (with the default workload, a second round ran twice as fast on both
servers). Only the system prompt is meant to be shared, as it is between real users. The machines
this runs on change speed over minutes, so the servers take turns at each point instead of one
server running the whole sweep before the next; with
`--repeat N` each point runs N rounds in alternating order (A B, B A, ...), so a drift in the
machine's speed weighs on both alike. An idle server waits on its socket and costs the measured
one nothing; one that has just finished may not be idle yet, so each measurement starts once the
cores are (`machine_quiet.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from chatstream.bench.chat_workload import ChatRequest, ChatWorkloadSpec, build_chat_workload
from chatstream.bench.machine_quiet import wait_until_quiet
from chatstream.bench.serve_client import run_load
from chatstream.bench.serve_metrics import Slo, summarize_load
from chatstream.bench.serve_report import plot_latency, render_serve_report
from chatstream.bench.serve_servers import ServerTarget, chatstream_command, running, vllm_command
from chatstream.commands.argument_types import positive_int


# Below this a Poisson schedule's gaps run to hours (1e-300 would sleep past any clock's range).
MIN_RATE = 0.001


def _floats(text: str) -> list[float]:
    try:
        values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        values = []
    if not values or any(not math.isfinite(v) or v < MIN_RATE for v in values):
        raise argparse.ArgumentTypeError(f"expected request rates of at least {MIN_RATE:g} per second, separated "
                                         f"by commas, got {text!r}")
    return values


def _wait_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 600:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to 600, got {text!r}")
    return value


def _named_url(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    return (name, url) if sep and name and url else (text, text)


def add_serve_bench_arguments(parser: argparse.ArgumentParser) -> None:
    servers = parser.add_argument_group("servers (all started first, then measured in turn at each load point)")
    servers.add_argument("--url", type=_named_url, action="append", default=[], metavar="[NAME=]BASE_URL",
                         help="a running OpenAI-compatible server, e.g. ours=http://127.0.0.1:8000/v1 (repeatable)")
    servers.add_argument("--chatstream", action="store_true", help="start `chatstream serve` for the run")
    servers.add_argument("--chatstream-cmd", default=None,
                         help="the command that starts our server instead ('{port}' is replaced); implies --chatstream")
    servers.add_argument("--chatstream-arg", action="append", default=[], metavar="ARG",
                         help="extra argument for the started chatstream serve, e.g. --chatstream-arg=--dtype=bfloat16")
    servers.add_argument("--vllm-python", default=None, help="start `vllm serve` with this Python (its own venv)")
    servers.add_argument("--vllm-arg", action="append", default=[], metavar="ARG",
                         help="extra argument for the started vLLM server (repeatable)")
    servers.add_argument("--vllm-kv-cache-gib", type=float, default=2.0,
                         help="VLLM_CPU_KVCACHE_SPACE for the started vLLM server (2)")
    servers.add_argument("--model", default=None, help="model for started servers (default: the bundled SmolLM2)")
    servers.add_argument("--dtype", default="float32", help="dtype for started servers (float32)")
    load = parser.add_argument_group("load")
    load.add_argument("--rates", type=_floats, default=None, metavar="R[,R...]",
                      help="Poisson arrival rates in requests/s, one load point each (default: 0.5,1,2,4)")
    load.add_argument("--concurrency", type=positive_int, default=None,
                      help="instead of rates: keep this many requests in flight (closed loop)")
    load.add_argument("--repeat", type=positive_int, default=1,
                      help="rounds at each load point, the servers' order alternating between rounds (1)")
    load.add_argument("--num-conversations", type=int, default=32)
    load.add_argument("--max-turns", type=int, default=4)
    load.add_argument("--user-words", type=int, default=40, help="median user message length in words (40)")
    load.add_argument("--reply-tokens", type=int, default=96, help="median reply length in tokens (96)")
    load.add_argument("--max-reply-tokens", type=int, default=256)
    load.add_argument("--system-words", type=int, default=None,
                      help="cut the shared system prompt to this many words (default: all, about 200 tokens)")
    load.add_argument("--seed", type=int, default=0)
    load.add_argument("--quiet-wait", type=_wait_seconds, default=15.0, metavar="S",
                      help="before each measurement, wait up to S seconds for the cores to fall idle (15; 0: don't)")
    load.add_argument("--slo-ttft", type=float, default=2.0, help="SLO on time to first token, seconds (2)")
    load.add_argument("--slo-itl", type=float, default=0.2, help="SLO on a request's mean inter-token gap, s (0.2)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", default=None, metavar="PATH", help="write every number as JSON ('-' = stdout)")
    out.add_argument("--plot", default=None, metavar="PNG", help="plot latency against the request rate")
    out.add_argument("--verbose", action="store_true", help="show started servers' output")


def _targets(args: argparse.Namespace) -> list[ServerTarget]:
    targets = [ServerTarget(name, base_url=url.rstrip("/")) for name, url in args.url]
    model = None
    if args.chatstream or args.chatstream_cmd or args.vllm_python:
        from chatstream.bench.runner import resolve_model

        model = resolve_model(args.model)
    if args.chatstream or args.chatstream_cmd:
        command = args.chatstream_cmd.split() if args.chatstream_cmd else \
            chatstream_command(model, args.dtype, args.chatstream_arg)
        targets.append(ServerTarget("chatstream", command=command))
    if args.vllm_python:
        env = {"VLLM_CPU_KVCACHE_SPACE": f"{args.vllm_kv_cache_gib:g}", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
        targets.append(ServerTarget("vllm", command=vllm_command(args.vllm_python, model, args.dtype, args.vllm_arg),
                                    env=env))
    if not targets:
        raise ValueError("no server: give --url, --chatstream or --vllm-python")
    names = [t.name for t in targets]
    if len(set(names)) < len(names):
        raise ValueError(f"two servers share a name ({', '.join(names)}): name them, e.g. --url ours=URL")
    return targets


def run_serve_bench(args: argparse.Namespace, progress: Any = None) -> dict[str, Any]:
    progress = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    spec = ChatWorkloadSpec(args.num_conversations, args.max_turns, args.user_words, args.reply_tokens,
                            args.max_reply_tokens, args.seed, args.system_words)
    requests = build_chat_workload(spec)  # the warm-up's system prompt and the report's shape
    slo = Slo(args.slo_ttft, args.slo_itl)
    points: list[dict[str, Any]] = [{"concurrency": args.concurrency}] if args.concurrency else \
        [{"rate": r} for r in (args.rates or [0.5, 1.0, 2.0, 4.0])]
    results: list[dict[str, Any]] = []
    targets = _targets(args)
    # One short request to each, untimed: first-use work (kernel builds, compilation) is not the load's.
    warmup = [ChatRequest(-1, 0, requests[0].messages[:1] + [{"role": "user", "content": "Hello"}], 4)]
    with contextlib.ExitStack() as stack:
        models: dict[str, str] = {}
        for target in targets:
            progress(f"== {target.name}: starting" if target.command else f"== {target.name}: {target.base_url}")
            models[target.name] = stack.enter_context(running(target, verbose=args.verbose))
            asyncio.run(run_load(target.base_url, models[target.name], warmup, concurrency=1))
        for index, point in enumerate(points):
            for round_ in range(args.repeat):
                seed = args.seed + index * args.repeat + round_
                measured = build_chat_workload(replace(spec, seed=seed))
                for target in targets if round_ % 2 == 0 else targets[::-1]:
                    label = f"{target.name} {point}" + (f" round {round_ + 1}" if args.repeat > 1 else "")
                    progress(f"   {label}: {len(measured)} requests ...")
                    # The server measured before may still be busy (`machine_quiet.py`).
                    quiet = args.quiet_wait > 0 and wait_until_quiet(timeout_s=args.quiet_wait)
                    if args.quiet_wait > 0 and not quiet:
                        progress(f"   (the cores did not fall idle within {args.quiet_wait:g} s; measuring anyway)")
                    records = asyncio.run(run_load(target.base_url, models[target.name], measured, seed=seed, **point))
                    summary = summarize_load(records, slo)
                    results.append({"server": target.name, "base_url": target.base_url, **point,
                                    "round": round_ + 1, "seed": seed, "started_quiet": quiet, **summary})
                    progress(f"   {label}: {summary['output_tokens_per_s']:.1f} tok/s, {summary['num_failed']} failed")
    return {"workload": {**spec.__dict__, "num_requests": len(requests)}, "points": points, "repeat": args.repeat,
            "results": results}


def serve_bench_main(args: argparse.Namespace) -> int:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the report
    try:
        report = run_serve_bench(args)
    except (ValueError, RuntimeError) as exc:
        print(f"chatstream bench serve: {exc}", file=sys.stderr)
        return 2
    render_serve_report(report, sys.stderr if args.json == "-" else sys.stdout)
    if args.json == "-":
        print(json.dumps(report, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot_latency(report, args.plot)
    return 0 if all(r["num_failed"] == 0 for r in report["results"]) else 1
