"""The sampler micro-benchmark runs, and compares a git revision's sampler with the current one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from chatstream.bench import sampler_bench


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampler_bench, "VOCAB", 2048)
    monkeypatch.setattr(sampler_bench, "BATCH_SIZES", (1, 4))
    monkeypatch.setattr(sampler_bench, "PROMPT_LEN", 8)
    monkeypatch.setattr(sampler_bench, "OUTPUT_LEN", 4)


def test_times_every_scenario(small, capsys: pytest.CaptureFixture[str]) -> None:
    assert sampler_bench.main(["--repeats", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(sampler_bench.SCENARIOS) * 2
    assert all(float(line.split()[-1]) > 0 for line in lines[1:])


def test_a_baseline_revision_runs_beside_the_current_sampler(small, capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(sampler_bench.__file__).resolve().parents[2]
    if shutil.which("git") is None or subprocess.run(["git", "rev-parse", "HEAD"], cwd=root,
                                                     capture_output=True).returncode != 0:
        pytest.skip("needs the git checkout")
    # The committed sampler against the working tree's (the same code unless it is being edited).
    code = sampler_bench.main(["--repeats", "1", "--baseline", "HEAD"])
    out = capsys.readouterr().out.splitlines()
    assert "baseline ms" in out[0] and "ratio" in out[0] and "same tokens" in out[0]
    assert len(out) == 2 + len(sampler_bench.SCENARIOS) * 2 and out[-1].startswith("geometric mean")
    assert code == (0 if out[-1].endswith("tokens: 0") else 1)
