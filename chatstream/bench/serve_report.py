"""The report of `chatstream bench serve`: the table, the ratios between the first two servers at
each load point, and `--plot` (PNG of latency against the request rate; needs matplotlib, the
`bench` extra).

Each ratio is taken within one round (the servers answered the same workload minutes apart), and
the rounds' ratios are summarized by their geometric mean. With two rounds or more, each server's
TTFT p99 is also taken over all its rounds' requests pooled: a round's p99 of some 75 requests is
nearly its one slowest request, so one round's figure moves a lot between runs.
"""

from __future__ import annotations

import math
from typing import Any, TextIO

from chatstream.bench.metrics import percentile, ratio


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
        tput = [ratio(ra["output_tokens_per_s"], rb["output_tokens_per_s"]) for ra, rb in pairs]
        ttft = [ratio(ra["ttft_s"]["p99"], rb["ttft_s"]["p99"]) for ra, rb in pairs]
        note = f"{a} / {b} at {point}: throughput {_fmt(_geomean(tput))}x, TTFT p99 {_fmt(_geomean(ttft))}x"
        if len(pairs) > 1:
            note += (f" (rounds: throughput {', '.join(_fmt(t) + 'x' for t in tput)}; "
                     f"TTFT p99 {', '.join(_fmt(t) + 'x' for t in ttft)})")
        notes.append(note)
        pooled = _pooled_ttft_note(a, b, point, pairs)
        if pooled:
            notes.append(pooled)
    rates = [p for p in report["points"] if p.get("rate")]
    both = [p for p in rates if _sustains(_at(report, a, p)) and _sustains(_at(report, b, p))]
    rule = f"{SUSTAINED_SLO_SHARE:.0%} of requests or more within the SLO in every round"
    if both:
        notes.append(f"highest rate both sustain ({rule}): {max(p['rate'] for p in both):g} req/s")
    elif rates:
        notes.append(f"no rate sustained by both ({rule})")
    return notes


def _pooled_ttft_note(a: str, b: str, point: dict[str, Any],
                      pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> str | None:
    """With two rounds or more: each server's TTFT p99 over the requests of all its rounds at
    `point`. Both servers answered the same workloads, so the pooled figures compare like with like."""
    if len(pairs) < 2 or not all("ttft_samples_s" in r for pair in pairs for r in pair):
        return None
    ta = [t for ra, _ in pairs for t in ra["ttft_samples_s"]]
    tb = [t for _, rb in pairs for t in rb["ttft_samples_s"]]
    if not ta or not tb:
        return None
    pa, pb = percentile(ta, 99), percentile(tb, 99)
    return (f"{a} / {b} at {point}, the rounds' requests pooled ({len(ta)} / {len(tb)}): "
            f"TTFT p99 {pa:.2f} s / {pb:.2f} s = {_fmt(ratio(pa, pb))}x")


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
