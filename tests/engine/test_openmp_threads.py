"""Set-up work in a thread that ends: its result and its errors come back, and after building an engine
the thread that steps it is the process's only OpenMP pool, so its workers spin instead of sleeping."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from chatstream.engine.openmp_threads import in_passing_thread


def test_the_work_runs_in_another_thread_that_has_ended_when_it_returns() -> None:
    seen: list[threading.Thread] = []

    def work() -> int:
        seen.append(threading.current_thread())
        return 42

    assert in_passing_thread(work) == 42
    assert seen[0] is not threading.current_thread() and not seen[0].is_alive()


@pytest.mark.parametrize("error", [ValueError("bad weights"), KeyboardInterrupt(), SystemExit(3)])
def test_what_the_work_raises_is_raised_to_the_caller(error: BaseException) -> None:
    def work() -> None:
        raise error

    with pytest.raises(type(error)) as caught:
        in_passing_thread(work)
    assert caught.value is error


# Builds the engine on this process's main thread (as the server's loader or a user's script does),
# then counts how often a new thread, standing in for the engine thread, goes to sleep over 1,000
# parallel additions. "pool-kept": the main thread first runs a large product itself, so it keeps
# an OpenMP pool whatever the builder does; that shows the count can see the throttling.
_PROBE = r"""
import sys, threading, torch
from chatstream.engine.builder import build_engine_core
model_dir, mode = sys.argv[1], sys.argv[2]
if mode == "pool-kept":
    torch.randn(512, 2048) @ torch.randn(2048, 2048)
core = build_engine_core(model_dir, options={"kv_cache_memory_gb": 0.25, "warmup": True})
sleeps = []

def engine_thread():
    x, y = torch.randn(1 << 20), torch.randn(1 << 20)
    z = torch.empty_like(x)
    status = f"/proc/self/task/{threading.get_native_id()}/status"
    count = lambda: int(open(status).read().split("\nvoluntary_ctxt_switches:")[1].split()[0])
    torch.add(x, y, out=z)
    before = count()
    for _ in range(1000):
        torch.add(x, y, out=z)
    sleeps.append(count() - before)

thread = threading.Thread(target=engine_thread)
thread.start()
thread.join()
print("sleeps", sleeps[0])
"""


def _sleeps(model_dir: Path, mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _PROBE, str(model_dir), mode], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.split("sleeps")[-1])


def _two_pools_exceed_the_cpus() -> bool:
    # libgomp throttles its waits once its threads (1 + each pool's workers) outnumber the CPUs.
    workers = torch.get_num_threads() - 1
    return 1 + 2 * workers > len(os.sched_getaffinity(0))


@pytest.mark.skipif(not sys.platform.startswith("linux") or torch.get_num_threads() < 2,
                    reason="counts a Linux thread's sleeps; one CPU thread has no OpenMP pool")
def test_after_building_on_this_thread_the_engine_thread_does_not_sleep_between_parallel_loops(
        smollm2_dir: Path) -> None:
    if _two_pools_exceed_the_cpus():
        assert _sleeps(smollm2_dir, "pool-kept") > 300  # the count sees it when two pools are kept
    # Building SmolLM2 runs large parallel loops; they ran in a thread that ended.
    assert _sleeps(smollm2_dir, "built") < 100
