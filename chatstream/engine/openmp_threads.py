"""Keeping the engine thread's OpenMP workers spinning: heavy set-up work runs in a thread that ends.

PyTorch's CPU wheels run their parallel loops (ours included) on GNU OpenMP, which keeps one pool
of worker threads per thread that starts parallel work, for as long as that thread lives. When the
process holds more OpenMP threads than it has CPUs, libgomp "throttles": a worker that finishes a
parallel loop spins about a hundred times (instead of some 300,000) and then sleeps on a futex, so
every loop of the next step pays a wake-up. A step runs a few hundred such loops.

Loading a model and preparing its weights (copies, packing, the KV cache) run large parallel
loops. Done on the thread that builds the engine (the server's loader thread, a user's main
thread), they leave that thread a pool; the engine thread then makes a second one and the count
passes the CPUs. Measured on a 2-core machine serving SmolLM2 at 2 requests/s: the engine thread
slept 2,600 times a second and served 138 tokens/s; with the set-up in a thread that ended, it
slept 60 times a second and served 179.

`in_passing_thread` runs a function in a new thread and waits for it: when the thread ends, libgomp
frees its pool. It cannot free a pool that a caller's own thread made before (a user who ran the
model on the main thread before handing it to `ChatStream`), so `warn_if_throttled`, which the
engine thread runs once as it starts, counts how often the thread sleeps over a few parallel
loops and says so in the log when its workers are throttled.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

import torch

logger = logging.getLogger("chatstream.engine")

T = TypeVar("T")

_PROBE_LOOPS = 32
_PROBE_ROUNDS = 5
_PROBE_ELEMENTS = 1 << 20  # 4 MiB of fp32: loops long enough that a throttled worker always sleeps
# Unthrottled workers spin for milliseconds between loops of a few dozen microseconds and do not
# sleep at all; throttled ones sleep in nearly every loop. The median of a few rounds counts: a
# round where another process took a CPU can show sleeps without throttling, and now and then a
# throttled round shows few.
_THROTTLED_SLEEPS = _PROBE_LOOPS // 4


def in_passing_thread(work: Callable[[], T], name: str = "chatstream-build") -> T:
    """`work()`, run in a new thread that ends before this returns; its exception is raised here."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, whatever it is
            failure.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def sleeps_over_parallel_loops(loops: int = _PROBE_LOOPS, rounds: int = _PROBE_ROUNDS) -> int | None:
    """How often this thread slept (voluntary context switches) over `loops` parallel additions, the median
    of `rounds` rounds; None where that cannot be counted (not Linux) or nothing runs in parallel (one thread)."""
    if not sys.platform.startswith("linux") or torch.get_num_threads() < 2:
        return None
    status = f"/proc/self/task/{threading.get_native_id()}/status"

    def sleeps() -> int:
        with open(status) as file:
            return int(file.read().split("\nvoluntary_ctxt_switches:")[1].split()[0])

    x = torch.ones(_PROBE_ELEMENTS)
    out = torch.empty_like(x)
    torch.add(x, x, out=out)  # the pool's first loop starts its workers: not counted
    counts = []
    try:
        for _ in range(rounds):
            before = sleeps()
            for _ in range(loops):
                torch.add(x, x, out=out)
            counts.append(sleeps() - before)
    except (OSError, IndexError, ValueError):  # a kernel without the field
        return None
    return sorted(counts)[len(counts) // 2]


def warn_if_throttled() -> None:
    """Log a warning when this thread's OpenMP workers sleep between parallel loops (see the module doc)."""
    count = sleeps_over_parallel_loops()
    if count is not None and count >= _THROTTLED_SLEEPS:
        logger.warning(
            "the engine thread slept in %d of %d parallel loops: OpenMP is throttled because another thread of "
            "this process keeps a pool of OpenMP workers (it ran PyTorch's parallel work, e.g. the model's forward "
            "pass or a large product, and is still alive). Steps will be slower. Run the model only through the "
            "engine, or do such work in a thread that ends.", count, _PROBE_LOOPS)
