"""The child process that runs one contender: `python -m chatstream.bench.worker --contender NAME
--workload-json JOB.json --out RESULT.json`.

Each contender runs in its own process, started one after another by `chatstream bench`, so that
  * its peak RSS is its own: `ru_maxrss` of this process, plus that of its largest child (vLLM runs the model in
    an engine-core process), with no other contender's model, caches or allocator arenas mixed in;
  * no contender inherits another's threads, compiled kernels or warmed caches;
  * vLLM can run under a different interpreter (its own venv and torch) than ours.
The result goes to the `--out` file rather than stdout, because the libraries under test print freely there.
This module is standard-library only at import time; the contender's module is imported after the job is read.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import sys
import traceback
from pathlib import Path

from chatstream.bench.contenders import load_run
from chatstream.bench.metrics import peak_rss_bytes
from chatstream.bench.protocol import BenchJob, WorkerResult


def _versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for package in ("torch", "transformers", "vllm"):
        if package in sys.modules:
            try:
                found[package] = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                found[package] = getattr(sys.modules[package], "__version__", "unknown")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one benchmark contender (started by `chatstream bench`).")
    parser.add_argument("--contender", required=True)
    parser.add_argument("--workload-json", required=True, type=Path, help="the BenchJob, as JSON")
    parser.add_argument("--out", required=True, type=Path, help="where to write the WorkerResult JSON")
    args = parser.parse_args(argv)
    job = BenchJob.from_json(args.workload_json.read_text())
    job.contender = args.contender
    try:
        run = load_run(args.contender)(job)
    except Exception:  # noqa: BLE001 - any failure becomes a reported result, not a lost one
        result = WorkerResult(contender=args.contender, ok=False, error=traceback.format_exc(), versions=_versions())
    else:
        gc.collect()
        own, children = peak_rss_bytes()
        result = WorkerResult(contender=args.contender, ok=True, run=run, peak_rss_bytes=own,
                              peak_rss_children_bytes=children, versions=_versions())
    result.write(args.out)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
