"""`chatstream serve` start-up failures exit at once, non-zero, with one clear line: a model path that
does not exist and a port that is taken are found before the model loads; a model that fails to
load ends the process instead of serving 503 forever."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _serve(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CHATSTREAM_CACHE_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "chatstream.cli", "serve", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_model_path_that_does_not_exist_exits_with_one_line(tmp_path):
    done = _serve("--model", str(tmp_path / "no" / "such" / "model"), "--port", str(_free_port()), tmp_path=tmp_path)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"ChatStream: cannot start: --model {str(tmp_path / 'no' / 'such' / 'model')!r}: "
                     "no such file or directory"], done.stderr


def test_a_port_in_use_exits_before_the_model_loads(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = _serve("--model", "smollm2", "--port", str(port), tmp_path=tmp_path)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "in use" in done.stderr
    assert "loading" not in done.stderr  # the port is checked first


def test_a_model_that_fails_to_load_ends_the_process(tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    done = _serve("--model", str(broken), "--port", str(_free_port()), tmp_path=tmp_path)
    assert done.returncode == 1
    failure = [line for line in done.stderr.splitlines() if line.startswith("ChatStream: cannot start")]
    assert len(failure) == 1 and "did not load" in failure[0], done.stderr
    assert "Traceback" not in done.stderr
