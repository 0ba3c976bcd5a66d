"""The servers `chatstream bench serve` measures: given by URL, or started (and stopped) by it.

Owns `ServerTarget` (a name, a base URL, and optionally the command that starts it) and `running`,
a context manager that starts the command in its own process session on a free port, waits until
`GET /health` and `GET /v1/models` answer 200, yields the model id the server reports, and ends the whole session
on exit. Started servers run one at a time, so they never compete for the cores.
Standard library plus httpx.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx


@dataclass
class ServerTarget:
    name: str
    base_url: str | None = None  # ".../v1"; None until started
    command: list[str] | None = None  # "{port}" is replaced by the chosen port
    env: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chatstream_command(model: str, dtype: str, extra: list[str]) -> list[str]:
    # Admission wide enough that the load generator, not our 429s, decides how many requests run.
    return [sys.executable, "-m", "chatstream.cli", "serve", "--model", model, "--dtype", dtype,
            "--host", "127.0.0.1", "--port", "{port}", "--num-concurrent", "256", "--max-queue", "4096", *extra]


def vllm_command(python: str, model: str, dtype: str, extra: list[str]) -> list[str]:
    return [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--dtype", dtype,
            "--host", "127.0.0.1", "--port", "{port}", *extra]


def _ready(base_url: str) -> bool:
    # Both our server and vLLM's answer /health with 200 only once the model is loaded (our /v1/models answers
    # earlier).
    root = base_url.removesuffix("/v1")
    try:
        return httpx.get(f"{root}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _model_id(base_url: str) -> str | None:
    try:
        response = httpx.get(f"{base_url}/models", timeout=5)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    data = response.json().get("data") or []
    return data[0]["id"] if data else None


@contextlib.contextmanager
def running(target: ServerTarget, startup_timeout_s: float = 900.0, verbose: bool = False) -> Iterator[str]:
    """Yields the model id to request; starts and stops `target.command` when there is one."""
    if target.command is None:
        if target.base_url is None:
            raise ValueError(f"{target.name}: neither a URL nor a command")
        model = _model_id(target.base_url)
        if model is None:
            raise RuntimeError(f"{target.name}: {target.base_url}/models does not answer")
        yield model
        return
    port = free_port()
    target.base_url = f"http://127.0.0.1:{port}/v1"
    command = [part.replace("{port}", str(port)) for part in target.command]
    log = tempfile.NamedTemporaryFile("w+", prefix=f"bench-serve-{target.name}-", suffix=".log", delete=False)
    proc = subprocess.Popen(command, env={**os.environ, **target.env}, stdout=None if verbose else log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not _ready(target.base_url) or (model := _model_id(target.base_url)) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                tail = "\n".join(log.read().splitlines()[-20:])
                raise RuntimeError(f"{target.name} did not start ({' '.join(command)}):\n{tail}")
            time.sleep(1.0)
        yield model
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        os.unlink(log.name)
