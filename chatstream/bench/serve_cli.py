"""`chatstream bench serve`: the serving benchmark over HTTP against OpenAI-compatible servers.

Owns the subcommand's options, the loop, the text report with the ratios between the first two
servers at each point, `--json`, and `--plot` (PNG of latency against the request rate; needs
matplotlib, the `bench` extra).

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
machine's speed weighs on both alike, and the ratios are reported per round and as their geometric
mean. An idle server waits on its socket and costs the measured one nothing.
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
from typing import Any, TextIO

from chatstream.bench.chat_workload import ChatRequest, ChatWorkloadSpec, build_chat_workload
from chatstream.bench.serve_client import run_load
from chatstream.bench.serve_metrics import Slo, summarize_load
from chatstream.bench.serve_servers import ServerTarget, chatstream_command, running, vllm_command
from chatstream.commands.argument_types import positive_int


def _floats(text: str) -> list[float]:
    values = [float(p) for p in text.split(",") if p.strip()]
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers separated by commas, got {text!r}")
    return values


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
    load.add_argument("--concurrency", type=int, default=None,
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
                    records = asyncio.run(run_load(target.base_url, models[target.name], measured, seed=seed, **point))
                    summary = summarize_load(records, slo)
                    results.append({"server": target.name, "base_url": target.base_url, **point,
                                    "round": round_ + 1, "seed": seed, **summary})
                    progress(f"   {label}: {summary['output_tokens_per_s']:.1f} tok/s, {summary['num_failed']} failed")
    return {"workload": {**spec.__dict__, "num_requests": len(requests)}, "points": points, "repeat": args.repeat,
            "results": results}


def _fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def render_serve_report(report: dict[str, Any], out: TextIO) -> None:
    w = report["workload"]
    counts = sorted({r["num_requests"] for r in report["results"]}) or [w["num_requests"]]
    sizes = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    print(f"{sizes} chat requests per measurement ({w['num_conversations']} conversations, up to {w['max_turns']} "
          f"turns, a workload of its own for each, seeds from {w['seed']}), streaming, greedy, EOS ignored", file=out)
    rounds = report.get("repeat", 1) > 1
    headers = ("server", "load", *(("round",) if rounds else ()), "ok/all", "out tok/s", "req/s", "goodput req/s",
               "TTFT p50/p90/p99 s", "ITL p50/p90/p99 ms", "E2E p50/p99 s")
    lines = [list(headers)]
    for r in report["results"]:
        load = f"{r['rate']:g} req/s" if r.get("rate") else f"{r['concurrency']} in flight"
        t, i, e = r["ttft_s"], r["itl_s"], r["e2e_s"]
        lines.append([r["server"], load, *((str(r["round"]),) if rounds else ()),
                      f"{r['num_requests'] - r['num_failed']}/{r['num_requests']}",
                      _fmt(r["output_tokens_per_s"], digits=1), _fmt(r["requests_per_s"]),
                      _fmt(r["goodput_requests_per_s"]),
                      "/".join(_fmt(t[k]) for k in ("p50", "p90", "p99")),
                      "/".join(_fmt(i[k], 1000, 0) for k in ("p50", "p90", "p99")),
                      "/".join(_fmt(e[k]) for k in ("p50", "p99"))])
    widths = [max(len(line[k]) for line in lines) for k in range(len(headers))]
    for line in lines:
        print("  ".join(c.ljust(wd) for c, wd in zip(line, widths)).rstrip(), file=out)
    for note in ratio_notes(report):
        print(note, file=out)
    for r in report["results"]:
        for error in r["errors"]:
            print(f"{r['server']}: {error}", file=out)


def _at(report: dict[str, Any], server: str, point: dict[str, Any]) -> list[dict[str, Any]]:
    """The server's results at the load point, one per round, in round order."""
    rows = [r for r in report["results"] if r["server"] == server and all(r.get(k) == v for k, v in point.items())]
    return sorted(rows, key=lambda r: r.get("round", 1))


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _geomean(values: list[float | None]) -> float | None:
    known = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in known) / len(known)) if known and len(known) == len(values) else None


# A server sustains a rate when at least this share of its requests meet the SLO, in every round.
SUSTAINED_SLO_SHARE = 0.9


def _sustains(rows: list[dict[str, Any]]) -> bool:
    return bool(rows) and all(r.get("slo_met_share", 0.0) >= SUSTAINED_SLO_SHARE for r in rows)


def ratio_notes(report: dict[str, Any]) -> list[str]:
    """First server against the second at each load point: throughput ratio and TTFT p99 ratio, per round
    (the rounds pair up in order) and their geometric mean; then the highest rate both servers sustain."""
    servers = list(dict.fromkeys(r["server"] for r in report["results"]))
    if len(servers) < 2:
        return []
    a, b = servers[:2]
    notes = []
    for point in report["points"]:
        pairs = list(zip(_at(report, a, point), _at(report, b, point)))
        tput = [_ratio(ra["output_tokens_per_s"], rb["output_tokens_per_s"]) for ra, rb in pairs]
        ttft = [_ratio(ra["ttft_s"]["p99"], rb["ttft_s"]["p99"]) for ra, rb in pairs]
        note = f"{a} / {b} at {point}: throughput {_fmt(_geomean(tput))}x, TTFT p99 {_fmt(_geomean(ttft))}x"
        if len(pairs) > 1:
            note += (f" (rounds: throughput {', '.join(_fmt(t) + 'x' for t in tput)}; "
                     f"TTFT p99 {', '.join(_fmt(t) + 'x' for t in ttft)})")
        notes.append(note)
    rates = [p for p in report["points"] if p.get("rate")]
    both = [p for p in rates if _sustains(_at(report, a, p)) and _sustains(_at(report, b, p))]
    rule = f"{SUSTAINED_SLO_SHARE:.0%} of requests or more within the SLO in every round"
    if both:
        notes.append(f"highest rate both sustain ({rule}): {max(p['rate'] for p in both):g} req/s")
    elif rates:
        notes.append(f"no rate sustained by both ({rule})")
    return notes


def plot_latency(report: dict[str, Any], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError("--plot needs matplotlib: pip install 'chatstream[bench]'") from exc
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    panels = (("ttft_s", "TTFT p50 / p99 (s)", 1.0), ("itl_s", "ITL p50 / p99 (ms)", 1000.0),
              ("output_tokens_per_s", "output tokens/s", None))
    for server in dict.fromkeys(r["server"] for r in report["results"]):
        rates = sorted({r["rate"] for r in report["results"] if r["server"] == server and r.get("rate")})
        rows = [_round_mean(_at(report, server, {"rate": rate})) for rate in rates]
        for ax, (key, title, scale) in zip(axes, panels):
            if scale is None:
                ax.plot(rates, [r[key] for r in rows], marker="o", label=server)
            else:
                line, = ax.plot(rates, [(r[key]["p50"] or 0) * scale for r in rows], marker="o", label=f"{server} p50")
                ax.plot(rates, [(r[key]["p99"] or 0) * scale for r in rows], marker="x", linestyle="--",
                        color=line.get_color(), label=f"{server} p99")
            ax.set_title(title)
            ax.set_xlabel("request rate (req/s)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _round_mean(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The plotted figures of one server at one rate: each the mean over the rounds."""
    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known else None

    out: dict[str, Any] = {"output_tokens_per_s": mean([r["output_tokens_per_s"] for r in rows])}
    for key in ("ttft_s", "itl_s"):
        out[key] = {q: mean([r[key][q] for r in rows]) for q in ("p50", "p99")}
    return out


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
