"""Record real SmolLM2 conversations through `chatstream serve --record`, then replay them in a
fresh process that has no model files, through /chat_stream and the OpenAI API at once: the
streams come back identical, sampled ones included, and a changed prompt is a clear error."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from live_server import session_client

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CHATS = {
    "greedy": (None, ["What is the capital of France?", "And of Germany?"]),
    "sampled": (0.9, ["Tell me a fun fact about cats.", "Another one, please."]),
}
OPENAI_MESSAGES = [{"role": "system", "content": "You answer in one sentence."},
                   {"role": "user", "content": "Why is the sky blue?"}]


def _start(args: list[str], env_extra: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO), **env_extra}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "chatstream.cli", "serve", "--port", str(port),
                                    "--num-concurrent", "8", "--max-new-tokens", "40", "--temperature", "0",
                                    *args], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def _chat(url: str, name: str) -> list[bytes]:
    temperature, turns = CHATS[name]
    bodies = []
    with session_client(url) as client:
        if temperature is not None:
            assert client.post("/set_generation_params", json={"temperature": temperature}).status_code == 200
        for text in turns:
            with client.stream("POST", "/chat_stream", json={"user_input": text}) as response:
                assert response.status_code == 200
                bodies.append(b"".join(response.iter_raw()))
    return bodies


def _openai(url: str, kind: str) -> list[str]:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
    model = client.models.list().data[0].id
    if kind == "chat_stream":
        chunks = client.chat.completions.create(model=model, messages=OPENAI_MESSAGES, temperature=0, stream=True,
                                                max_tokens=30)
        return [f"{c.choices[0].delta.content}|{c.choices[0].finish_reason}" for c in chunks if c.choices]
    answer = client.completions.create(model=model, prompt="Once upon a time", max_tokens=24, temperature=0.8,
                                       top_p=0.95)
    return [answer.choices[0].text, answer.choices[0].finish_reason]


def _run_all(url: str, concurrently: bool) -> dict[str, object]:
    jobs = {"greedy": lambda: _chat(url, "greedy"), "sampled": lambda: _chat(url, "sampled"),
            "openai_chat": lambda: _openai(url, "chat_stream"), "openai_completion": lambda: _openai(url, "completion")}
    if not concurrently:
        return {name: job() for name, job in jobs.items()}
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def test_recorded_conversations_replay_identically_without_the_model(smollm2_dir, tmp_path):
    recording = tmp_path / "recording"
    recorder, url = _start(["--model", str(smollm2_dir), "--record", str(recording)],
                           {"CHATSTREAM_CACHE_DIR": str(tmp_path / "cache-record")}, tmp_path / "record.log")
    try:
        recorded = _run_all(url, concurrently=False)
    finally:
        _stop(recorder)
    manifest = json.loads((recording / "manifest.json").read_text())
    assert manifest["format"] == "chatstream-recording" and manifest["version"] == 1
    assert len(list((recording / "requests").glob("*.safetensors"))) == 6
    assert not [p for p in recording.rglob("*") if p.name.startswith("model") or p.suffix in (".gguf", ".bin")]

    # A fresh process whose cache is empty and that may not reach a hub: only the recording exists.
    replayer, url = _start(["--model", str(recording)], {"CHATSTREAM_CACHE_DIR": str(tmp_path / "cache-replay"),
                                                         "HF_HUB_OFFLINE": "1"}, tmp_path / "replay.log")
    try:
        replayed = _run_all(url, concurrently=True)
        opened = {f.path for f in psutil.Process(replayer.pid).open_files()}
        mapped = {m.path for m in psutil.Process(replayer.pid).memory_maps()}
        assert not [p for p in opened | mapped if str(smollm2_dir) in p]
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        changed = [{"role": "system", "content": "You answer in one sentence."},
                   {"role": "user", "content": "Why is the sea blue?"}]
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model=client.models.list().data[0].id, messages=changed, max_tokens=30)
    finally:
        _stop(replayer)
    assert replayed == recorded
    assert "Paris" in recorded["greedy"][0].decode()
    message = str(info.value)
    assert "diverged" in message and "expected token" in message and "got" in message
