"""Waiting, before a measurement, until the machine's cores are idle (`wait_until_quiet`).

`chatstream bench serve` runs the servers one after the other on the same cores. A server that has
just answered its last request is not always idle at once: vLLM's CPU build keeps a core busy for
about a second after its load ends (one core at 100 % for 0.8-0.9 s, sampled from `/proc/stat`
every 0.1 s). The first requests of the next server's measurement then shared the cores with it:
in three runs, each round of ours that came right after one of vLLM's had its first request's
TTFT at 0.96-1.04 s, against 0.05-0.37 s after one of our own and 0.13-0.35 s for vLLM's first
requests after ours. So before each measurement the loop waits until the cores are idle.

Idle means: `windows` windows of `window_s` in a row in which the whole machine's busy time was at
most `busy_share` of its capacity. Linux only (`/proc/stat`); elsewhere, and after `timeout_s`, it
stops waiting. Standard library only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

CpuTimes = tuple[int, int]  # (busy, total) jiffies since boot, all cores


def read_cpu_times(stat: Path = Path("/proc/stat")) -> CpuTimes | None:
    """The machine's busy and total CPU time so far, or None where `/proc/stat` is missing or not as Linux writes it."""
    try:
        fields = stat.read_text().split("\n", 1)[0].split()
    except (OSError, UnicodeDecodeError):
        return None
    if len(fields) < 5 or fields[0] != "cpu" or not all(v.isdigit() for v in fields[1:]):
        return None
    values = [int(v) for v in fields[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user time
    return total - idle, total


def wait_until_quiet(*, busy_share: float = 0.15, window_s: float = 0.25, windows: int = 2, timeout_s: float = 15.0,
                     read: Callable[[], CpuTimes | None] = read_cpu_times,
                     sleep: Callable[[float], None] = time.sleep) -> bool:
    """Wait until the cores are idle (see the module); True if they were, False if it stopped waiting."""
    last = read()
    if last is None:
        return False
    quiet, waited = 0, 0.0
    while quiet < windows:
        if waited >= timeout_s:
            return False
        sleep(window_s)
        waited += window_s
        now = read()
        if now is None:
            return False
        busy, total = now[0] - last[0], now[1] - last[1]
        last = now
        quiet = quiet + 1 if total <= 0 or busy <= busy_share * total else 0
    return True
