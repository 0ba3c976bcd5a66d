"""A micro-benchmark of the sampler alone: `python -m chatstream.bench.sampler_bench [--baseline REV]`.

Owns the sampler's speed check. It times `Sampler` on synthetic logits shaped like a real model's
(a vocabulary of 49,152, SmolLM2's; a heavy head of likely tokens over a long flat tail) for batch
sizes 1/8/32/64 and the settings that take different paths through it: greedy, temperature only,
top-k, top-p, a chat preset with a penalty, min-p, a mixed batch, and a flat distribution whose
top-p set is too large for the shortlist. With `--baseline REV` the sampler of that git revision
is loaded beside the current one and both are timed in the same run, interleaved, so the ratio is
fair on a busy machine; their tokens are compared where they must agree (greedy and seeded rows).
Times are the median CPU time of the calling thread, in milliseconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from chatstream.engine import sampler as current_module
from chatstream.engine.sampling_params import SamplingParams

VOCAB = 49152
BATCH_SIZES = (1, 8, 32, 64)
PROMPT_LEN = 256
OUTPUT_LEN = 128

# name -> (settings of row i, every how many rows one is flat: 0 none, 1 all)
SCENARIOS: dict[str, tuple[Callable[[int], dict[str, Any]], int]] = {
    "greedy": (lambda i: {"temperature": 0.0}, 0),
    "temperature": (lambda i: {"temperature": 0.8, "seed": i}, 0),
    "top_k": (lambda i: {"temperature": 0.8, "top_k": 50, "seed": i}, 0),
    "top_p": (lambda i: {"temperature": 0.8, "top_p": 0.9, "seed": i}, 0),
    "chat": (lambda i: {"temperature": 0.7, "top_k": 50, "top_p": 0.95, "repetition_penalty": 1.1, "seed": i}, 0),
    "min_p": (lambda i: {"temperature": 1.0, "min_p": 0.05, "seed": i}, 0),
    "mixed": (lambda i: [{"temperature": 0.0}, {"temperature": 1.0, "seed": i}, {"top_p": 0.9, "seed": i},
                         {"top_k": 40, "temperature": 0.7}][i % 4], 0),
    "top_p_1_flat": (lambda i: {"temperature": 1.0, "top_p": 0.95, "seed": i}, 8),  # one row in 8 ranked in full
    "flat_top_p": (lambda i: {"temperature": 1.0, "top_p": 0.95, "seed": i}, 1),
}


def load_baseline(revision: str) -> ModuleType:
    """The sampler module as it was at `revision` (its own imports resolve to the current package)."""
    root = Path(__file__).resolve().parents[2]
    source = subprocess.run(["git", "show", f"{revision}:chatstream/engine/sampler.py"], cwd=root,
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_sampler.py"
    path.write_text(source)
    # Revisions before the engine's types moved into chatstream.engine import them from the old path.
    for old, new in (("chatstream.sampling_params", "chatstream.engine.sampling_params"),):
        sys.modules.setdefault(old, importlib.import_module(new))
    spec = importlib.util.spec_from_file_location("baseline_sampler", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def make_logits(batch: int, flat_every: int, generator: torch.Generator) -> torch.Tensor:
    """A peaked head over a flat tail per row; every `flat_every`-th row (from the first) flat only."""
    logits = torch.randn(batch, VOCAB, generator=generator) * 2.0
    head = torch.randint(0, VOCAB, (batch, 40), generator=generator)
    boost = torch.linspace(14.0, 6.0, 40).expand(batch, 40)
    logits.scatter_add_(1, head, boost)
    if flat_every:
        logits[::flat_every] = torch.randn(logits[::flat_every].shape, generator=generator) * 0.5
    return logits


def make_rows(module: ModuleType, settings: Callable[[int], dict[str, Any]], batch: int) -> list[Any]:
    rows = []
    for i in range(batch):
        prompt = [(i * 7919 + j * 31) % VOCAB for j in range(PROMPT_LEN)]
        output = [(i * 104729 + j * 17) % VOCAB for j in range(OUTPUT_LEN)]
        rows.append(module.SamplingRow(SamplingParams(**settings(i)), prompt, output))
    return rows


def time_call(fn: Callable[[], torch.Tensor]) -> float:
    # CPU time of this thread (torch runs on it alone with --threads 1): time spent waiting for a
    # core that another process holds does not count, which keeps a shared machine's noise out.
    start = time.thread_time()
    fn()
    return time.thread_time() - start


def run(baseline: ModuleType | None, repeats: int) -> int:
    variants = {"current": current_module} if baseline is None else {"baseline": baseline, "current": current_module}
    header = f"{'scenario':<12} {'batch':>5} " + " ".join(f"{name + ' ms':>12}" for name in variants)
    print(header + ("  ratio  same tokens" if baseline is not None else ""))
    ratios: list[float] = []
    mismatches = 0
    for name, (settings, flat_every) in SCENARIOS.items():
        for batch in BATCH_SIZES:
            logits = make_logits(batch, flat_every, torch.Generator().manual_seed(batch))
            calls = {}
            for variant, module in variants.items():
                sampler = module.Sampler(VOCAB)
                sampler.generator.manual_seed(0)
                rows = make_rows(module, settings, batch)
                calls[variant] = (lambda s=sampler, r=rows: s(logits, r))
            times: dict[str, list[float]] = {v: [] for v in variants}
            for rep in range(repeats + 1):
                order = list(variants) if rep % 2 == 0 else list(reversed(variants))
                for variant in order:
                    elapsed = time_call(calls[variant])
                    if rep:  # the first round warms caches and allocators up
                        times[variant].append(elapsed)
            medians = {v: statistics.median(t) * 1e3 for v, t in times.items()}
            line = f"{name:<12} {batch:>5} " + " ".join(f"{medians[v]:>12.3f}" for v in variants)
            if baseline is not None:
                ratio = medians["current"] / medians["baseline"]
                ratios.append(ratio)
                same = _deterministic_tokens_agree(calls, make_rows(current_module, settings, batch))
                mismatches += not same
                line += f"  {ratio:5.2f}  {'yes' if same else 'NO'}"
            print(line, flush=True)
    if baseline is not None:
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"geometric mean of current/baseline time: {geo:.3f} (below 1: current is faster); "
              f"scenarios with differing deterministic tokens: {mismatches}")
    return 1 if mismatches else 0


def _deterministic_tokens_agree(calls: dict[str, Callable[[], torch.Tensor]], rows: list[Any]) -> bool:
    """Greedy and seeded rows must pick the same token in both variants (unseeded ones may differ)."""
    results = {variant: call() for variant, call in calls.items()}
    fixed = [i for i, row in enumerate(rows) if row.params.temperature == 0 or row.params.seed is not None]
    first, second = results.values()
    return first[fixed].tolist() == second[fixed].tolist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git revision whose sampler is timed beside the current one")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per variant and case (15)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: the CPU time measured is then all of the work)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    baseline = load_baseline(args.baseline) if args.baseline else None
    return run(baseline, args.repeats)


if __name__ == "__main__":
    sys.exit(main())
