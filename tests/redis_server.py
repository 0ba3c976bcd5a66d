"""A real `redis-server` (Debian's) for tests: on a free port of 127.0.0.1, in its own folder.

`RedisServer(folder)` starts on `start()` and stops on `stop()` (or as a context manager);
`restart()` keeps the port and the folder, so with ``persistent=True`` (append-only file,
fsync on every write) the data survive it. The fixtures that hand these out live in
tests/conftest.py (`redis_server`, `redis_server_factory`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
SKIP_REASON = "redis-server is not installed (apt-get install redis-server; the README's test command does it)"


def redis_server_available() -> bool:
    return Path(REDIS_SERVER).is_file()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    def __init__(self, folder: Path, *, persistent: bool = False) -> None:
        self.folder = folder
        self.persistent = persistent
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _command(self) -> list[str]:
        durability = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        return [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                "--save", "", *durability, "--daemonize", "no", "--protected-mode", "yes",
                "--logfile", str(self.folder / "redis.log")]

    def start(self) -> "RedisServer":
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # a port found free may be taken before redis binds it: try another
            if not self.port or self.process is None:
                self.port = self.port or _free_port()
            self.process = subprocess.Popen(self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready():
                return self
            self._kill()
            self.port = _free_port()
        raise RuntimeError(f"redis-server did not start; see {self.folder / 'redis.log'}")

    def _wait_ready(self, timeout_s: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        """SIGTERM: redis-server flushes its append-only file and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        """Stops and starts again on the same port and folder."""
        self.stop()
        self.process = subprocess.Popen(self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not self._wait_ready():
            self._kill()
            raise RuntimeError(f"redis-server did not restart on port {self.port}")

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
