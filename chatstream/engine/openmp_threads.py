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
model on the main thread before handing it to `ChatStream`); ARCHITECTURE.md says so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


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
