"""Waiting for idle cores before a measurement: `/proc/stat` parsed, idle windows counted in a row."""

from __future__ import annotations

from pathlib import Path

from chatstream.bench.machine_quiet import read_cpu_times, wait_until_quiet


def test_cpu_times_are_busy_and_total_jiffies(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user already)
    stat.write_text("cpu  100 5 50 800 40 3 2 0 7 0\ncpu0 50 2 25 400 20 1 1 0 3 0\n")
    assert read_cpu_times(stat) == (100 + 5 + 50 + 3 + 2, 1000)
    assert read_cpu_times(tmp_path / "missing") is None
    for odd in ("intr 1 2 3\n", "cpu  1 2 x 4 5\n", "cpu  1 2\n", "", "cpu -1 2 3 4 5\n"):
        (tmp_path / "odd").write_text(odd)
        assert read_cpu_times(tmp_path / "odd") is None
    (tmp_path / "bytes").write_bytes(b"\xff\xfe cpu 1 2 3 4 5\n")
    assert read_cpu_times(tmp_path / "bytes") is None


def _scripted(busy_shares: list[float]):
    """A reader whose successive windows were busy for the given shares (100 jiffies a window)."""
    readings = [(0, 0)]
    for share in busy_shares:
        busy, total = readings[-1]
        readings.append((busy + round(100 * share), total + 100))
    calls = iter(readings)
    return lambda: next(calls)


def test_it_waits_for_idle_windows_in_a_row() -> None:
    slept: list[float] = []
    # Busy (vLLM's poll after its load), one idle window, busy again, then two idle ones.
    assert wait_until_quiet(read=_scripted([0.5, 0.5, 0.05, 0.4, 0.1, 0.0]), sleep=slept.append, window_s=0.25)
    assert slept == [0.25] * 6


def test_it_stops_waiting_at_the_timeout_or_without_proc_stat() -> None:
    slept: list[float] = []
    assert not wait_until_quiet(read=_scripted([0.6] * 100), sleep=slept.append, window_s=0.5, timeout_s=3.0)
    assert len(slept) == 6
    assert not wait_until_quiet(read=lambda: None, sleep=slept.append)
    assert len(slept) == 6  # nothing to watch: no wait at all
