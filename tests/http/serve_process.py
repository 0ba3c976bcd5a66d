"""`chatstream serve` as a real process on 127.0.0.1 for end-to-end tests: started with its own data
directory (where the default SQLite conversation store and the session key live), stopped with
SIGTERM or killed with SIGKILL, and started again on the same data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """One `chatstream serve`; `start()` waits for /health to say ready."""

    def __init__(self, args: list[str], data_dir: Path, log: Path, log_level: str = "INFO") -> None:
        self.args = args
        self.data_dir = data_dir
        self.log = log
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout_s: float = 240.0) -> "ServeProcess":
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(REPO), "CHATSTREAM_DATA_DIR": str(self.data_dir),
               "CHATSTREAM_CACHE_DIR": str(self.data_dir / "cache")}
        with open(self.log, "a") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chatstream.cli", "--log-level", self.log_level, "serve", *self.args,
                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.2)

    def stop(self) -> int:
        """SIGTERM, as a user's Ctrl-C or a service manager does; the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        """SIGKILL: no shutdown at all."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
