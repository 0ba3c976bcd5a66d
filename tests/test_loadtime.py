"""Tests for chatstream.loadtime: recording on the first run, a percentage bar afterwards, re-raised errors, storage
under the (redirected) cache dir, and the import staying free of torch. No assertion depends on how fast anything
runs; a long refresh interval keeps the drawn frames to the first and the final one."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from chatstream.loadtime import RECORDING_NOTE, LoadTime, safe_file_stem

SLOW = 60.0  # refresh interval far longer than any test call: only the first and the final frame are drawn


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHATSTREAM_CACHE_DIR", str(tmp_path))
    return tmp_path


def _timed(name: str, lines: list[str], result: object = "ok", **kwargs) -> LoadTime:
    def fn() -> object:
        time.sleep(0.01)  # a measurable duration, so the stored time is certainly > 0
        return result

    return LoadTime(name=name, fn=fn, fn_print=lines.append, interval=SLOW, **kwargs)


def test_first_run_records_then_second_run_shows_percentage(cache: Path) -> None:
    first: list[str] = []
    assert _timed("org/model", first)() == "ok"
    assert first[0] == f'Loading "org/model" ... 00:00 {RECORDING_NOTE}'
    assert first[-1].endswith("(load time recorded)")
    stored = cache / "loadtime" / "org_model.json"
    total = json.loads(stored.read_text())["total_time"]
    assert isinstance(total, float) and total > 0

    second: list[str] = []
    _timed("org/model", second)()
    assert second[0].startswith('Loading "org/model" ... 00:00/00:00 [')
    assert second[0].endswith("(  0%)")
    assert second[-1].endswith("(100%)") and "█" * 20 in second[-1]
    assert not any(RECORDING_NOTE in line for line in second)
    # every successful run refreshes the stored time
    assert json.loads(stored.read_text())["total_time"] != total


def test_progress_line_caps_at_100_percent(cache: Path) -> None:
    (cache / "loadtime").mkdir()
    (cache / "loadtime" / "m.json").write_text(json.dumps({"total_time": 0.001}))
    lines: list[str] = []

    def until_a_tick_was_drawn() -> None:
        deadline = time.monotonic() + 30
        while len(lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)

    LoadTime(name="m", fn=until_a_tick_was_drawn, fn_print=lines.append, interval=0.01)()
    assert len(lines) >= 3  # first frame, at least one tick, final frame
    assert lines[0].endswith("(  0%)")
    # a tick past the stored time: full bar at 100 %, elapsed still shown against the stored 00:00
    assert lines[1].endswith("[" + "█" * 20 + "] (100%)") and "/00:00 [" in lines[1]


def test_stderr_bar_with_percentage(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    LoadTime(name="m", fn=lambda: 1, interval=SLOW)()
    first = capsys.readouterr()
    assert first.out == ""
    assert 'Loading "m" ...' in first.err and RECORDING_NOTE in first.err

    LoadTime(name="m", fn=lambda: 2, interval=SLOW)()
    second = capsys.readouterr()
    assert second.out == ""
    assert "  0%|" in second.err and "100%|" in second.err and RECORDING_NOTE not in second.err


def test_message_replaces_description(cache: Path) -> None:
    lines: list[str] = []
    _timed("m", lines, message="Warming up")()
    assert lines[0].startswith("Warming up ... ")


def test_pbar_false_shows_nothing_but_records(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[str] = []
    assert _timed("m", lines, result=42, pbar=False)() == 42
    assert lines == [] and capsys.readouterr().err == ""
    assert (cache / "loadtime" / "m.json").is_file()


def test_exception_is_reraised_and_nothing_stored(cache: Path) -> None:
    lines: list[str] = []

    def boom() -> None:
        raise RuntimeError("weights missing")

    loader = LoadTime(name="broken", fn=boom, fn_print=lines.append, interval=0.01)
    with pytest.raises(RuntimeError, match="weights missing"):
        loader()
    assert lines[-1].endswith("(failed)")
    assert not (cache / "loadtime" / "broken.json").exists()
    assert loader.stored_time() is None
    # the display thread was joined: no thread of ours is left behind
    assert not any(t.name == "chatstream-loadtime" for t in threading.enumerate())


def test_start_returns_result_and_clear_stored_data(cache: Path) -> None:
    loader = _timed("m", [], result={"model": 1})
    assert loader.start() == {"model": 1}
    assert loader.stored_time() is not None and loader.stored_time() > 0
    loader.clear_stored_data()
    assert loader.stored_time() is None
    loader.clear_stored_data()  # clearing twice is fine


def test_fn_is_required() -> None:
    with pytest.raises(TypeError):
        LoadTime(name="m")
    with pytest.raises(TypeError):
        LoadTime(name="m", fn="not callable")  # type: ignore[arg-type]


def test_unreadable_stored_time_is_ignored(cache: Path) -> None:
    (cache / "loadtime").mkdir()
    (cache / "loadtime" / "m.json").write_text("{not json")
    lines: list[str] = []
    _timed("m", lines)()
    assert RECORDING_NOTE in lines[0]
    assert json.loads((cache / "loadtime" / "m.json").read_text())["total_time"] > 0


def test_dirname_and_safe_names(cache: Path) -> None:
    name = "C:\\models\\a/b c"
    _timed(name, [], dirname="timings")()
    assert (cache / "timings" / "C__models_a_b_c.json").is_file()
    assert safe_file_stem("org/model") == "org_model"
    assert safe_file_stem("..") == "_"
    assert "/" not in safe_file_stem("../../etc/passwd")


def test_documented_usage_example(cache: Path, tmp_path: Path) -> None:
    from chatstream import LoadTime as Exported

    model_path = str(tmp_path / "my-model")
    model = Exported(name=model_path, fn=lambda: {"weights": [1, 2, 3]})()
    assert model == {"weights": [1, 2, 3]}
    assert LoadTime(name=model_path, fn=lambda: None).stored_time() is not None


def test_hf_name_not_downloaded_is_silent_and_unrecorded(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    lines: list[str] = []
    _timed("org/not-downloaded", lines, hf=True)()
    assert lines == []
    assert not (cache / "loadtime" / "org_not-downloaded.json").exists()

    snapshot = tmp_path / "hub" / "models--org--cached" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"")
    _timed("org/cached", lines, hf=True)()
    assert RECORDING_NOTE in lines[0]


def test_model_loader_uses_the_same_cache_dir(cache: Path) -> None:
    from chatstream import loadtime
    from chatstream.engine import model_loader

    assert loadtime.cache_dir() == model_loader.cache_dir() == cache


def test_import_does_not_load_torch() -> None:
    code = "import sys, chatstream.loadtime; from chatstream import LoadTime; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
